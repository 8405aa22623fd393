//! Error reporting the way runc does it: to stderr, and to `--log` in text or JSON.

use std::io::Write;
use std::path::PathBuf;

pub struct Logger {
    file: Option<PathBuf>,
    json: bool,
}

impl Logger {
    pub fn new(file: Option<PathBuf>, format: &str) -> Self {
        Logger {
            file,
            json: format == "json",
        }
    }

    pub fn error(&self, msg: &str) {
        eprintln!("criox-runc: {msg}");
        let Some(path) = &self.file else { return };
        let time = crate::monitor::cri_log::timestamp();
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        } else {
            format!("time=\"{time}\" level=error msg={msg:?}")
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
