//! The monitor's own errors. Once detached its stderr is /dev/null (it must not hold the
//! launcher's terminal or pipe), so what goes wrong after that is written to `monitor.log`
//! in the container's state directory: private (0600), appended, and bounded so that a
//! monitor failing in a loop cannot fill the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use super::files;

/// Past this size the log starts over, keeping the newest lines.
pub const LIMIT: u64 = 64 * 1024;

static LOG: OnceLock<File> = OnceLock::new();

/// Opens `monitor.log` in `state_dir` for the rest of the monitor's life. Without it the
/// monitor still works; its errors then go nowhere.
pub fn open(state_dir: &Path) {
    let path = state_dir.join(files::OWN_LOG);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    if let Ok(file) = file {
        let _ = LOG.set(file);
    }
}

/// Appends one line with the time; starts the file over when it would pass [`LIMIT`].
pub fn error(message: &str) {
    let Some(mut file) = LOG.get() else {
        return;
    };
    write_bounded(&mut file, message, LIMIT);
}

fn write_bounded(file: &mut &File, message: &str, limit: u64) {
    let line = format!(
        "{} monitor[{}]: {}\n",
        super::cri_log::timestamp(),
        std::process::id(),
        message.replace('\n', " ")
    );
    let len = file.metadata().map_or(0, |m| m.len());
    if len + line.len() as u64 > limit {
        let _ = file.set_len(0);
    }
    let keep = line.len().min(limit as usize);
    let _ = file.write_all(&line.as_bytes()[..keep]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lines_are_appended_privately_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(files::OWN_LOG);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        for i in 0..100 {
            write_bounded(&mut &file, &format!("failure number {i}"), 1024);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 1024, "{} bytes", text.len());
        assert!(text.contains("failure number 99"), "{text}");
        assert!(!text.contains("failure number 0\n"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
