//! The process part of the spec that comes from the image config and the CRI's override
//! rules: argv, environment, working directory and stop signal.

use criox_formats::cri_fields::container as cri_fields;

use super::error::{Result, SpecError};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The kubelet's rules: `command` replaces the image's Entrypoint and `args` its Cmd; a
/// `command` without `args` drops the image's Cmd as well.
pub fn argv(
    command: &[String],
    args: &[String],
    entrypoint: &[String],
    cmd: &[String],
) -> Result<Vec<String>> {
    let mut argv: Vec<String> = if command.is_empty() {
        entrypoint.to_vec()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        argv.extend_from_slice(args);
    } else if command.is_empty() {
        argv.extend_from_slice(cmd);
    }
    if argv.is_empty() {
        return Err(SpecError::invalid(
            "command",
            "no command given and the image has no Entrypoint or Cmd",
        ));
    }
    Ok(argv)
}

/// An ordered environment where a later `set` of the same name replaces the value in place.
#[derive(Debug, Default)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.vars.iter().any(|(n, _)| n == name)
    }

    /// Image-style `NAME=value` entries; an entry without `=` is a name with empty value.
    pub fn set_entries(&mut self, field: &str, entries: &[String]) -> Result<()> {
        for entry in entries {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            validate_name(field, name)?;
            self.set(name, value);
        }
        Ok(())
    }

    pub fn into_entries(self) -> Vec<String> {
        self.vars
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect()
    }
}

pub fn validate_name(field: &str, name: &str) -> Result<()> {
    Ok(cri_fields::env_name(field, name)?)
}

/// The CRI `working_dir`, else the image's WorkingDir, else `/`.
pub fn working_dir(cri: &str, image: Option<&str>) -> Result<String> {
    Ok(cri_fields::working_dir(cri, image)?)
}

/// The image's StopSignal as a number: `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`. Absent
/// means SIGTERM.
pub fn stop_signal(image: Option<&str>) -> Result<i32> {
    const FIELD: &str = "image config StopSignal";
    let Some(raw) = image.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(libc::SIGTERM);
    };
    let invalid = || SpecError::invalid(FIELD, format!("unknown signal {raw:?}"));
    if let Ok(n) = raw.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let offset: i32 = match rest.strip_prefix('+') {
            Some(n) => n.parse().map_err(|_| invalid())?,
            None if rest.is_empty() => 0,
            None => return Err(invalid()),
        };
        let n = libc::SIGRTMIN() + offset;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let offset: i32 = match rest.strip_prefix('-') {
            Some(n) => n.parse().map_err(|_| invalid())?,
            None if rest.is_empty() => 0,
            None => return Err(invalid()),
        };
        let n = libc::SIGRTMAX() - offset;
        return if n >= libc::SIGRTMIN() {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn image_entrypoint_and_cmd_when_nothing_given() {
        let got = argv(&[], &[], &s(&["/ep"]), &s(&["a", "b"])).unwrap();
        assert_eq!(got, s(&["/ep", "a", "b"]));
    }

    #[test]
    fn args_replace_cmd_only() {
        let got = argv(&[], &s(&["x"]), &s(&["/ep"]), &s(&["a"])).unwrap();
        assert_eq!(got, s(&["/ep", "x"]));
    }

    #[test]
    fn command_replaces_entrypoint_and_drops_cmd() {
        let got = argv(&s(&["/c"]), &[], &s(&["/ep"]), &s(&["a"])).unwrap();
        assert_eq!(got, s(&["/c"]));
    }

    #[test]
    fn command_and_args_replace_both() {
        let got = argv(&s(&["/c"]), &s(&["x", "y"]), &s(&["/ep"]), &s(&["a"])).unwrap();
        assert_eq!(got, s(&["/c", "x", "y"]));
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let e = argv(&[], &[], &[], &[]).unwrap_err();
        assert!(e.to_string().starts_with("command: "));
    }

    #[test]
    fn env_later_values_win_in_place() {
        let mut env = Environment::default();
        env.set_entries("image config Env", &s(&["A=1", "B=2", "EMPTY"]))
            .unwrap();
        env.set("A", "cri");
        env.set("C", "3");
        assert_eq!(env.into_entries(), s(&["A=cri", "B=2", "EMPTY=", "C=3"]));
    }

    #[test]
    fn env_invalid_name() {
        let mut env = Environment::default();
        assert!(env.set_entries("envs", &s(&["=x"])).is_err());
    }

    #[test]
    fn working_dir_rules() {
        assert_eq!(working_dir("", None).unwrap(), "/");
        assert_eq!(working_dir("", Some("/srv")).unwrap(), "/srv");
        assert_eq!(working_dir("", Some("app")).unwrap(), "/app");
        assert_eq!(working_dir("/w", Some("/srv")).unwrap(), "/w");
        let e = working_dir("rel", None).unwrap_err();
        assert!(e.to_string().starts_with("working_dir: "));
    }

    #[test]
    fn stop_signal_forms() {
        assert_eq!(stop_signal(None).unwrap(), libc::SIGTERM);
        assert_eq!(stop_signal(Some("SIGINT")).unwrap(), libc::SIGINT);
        assert_eq!(stop_signal(Some("quit")).unwrap(), libc::SIGQUIT);
        assert_eq!(stop_signal(Some("9")).unwrap(), 9);
        assert_eq!(
            stop_signal(Some("SIGRTMIN+3")).unwrap(),
            libc::SIGRTMIN() + 3
        );
        assert!(stop_signal(Some("SIGNOPE")).is_err());
        assert!(stop_signal(Some("0")).is_err());
    }
}
