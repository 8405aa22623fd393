//! `config.linux.cgroup_parent` under the systemd cgroup driver: a slice name as the
//! kubelet sends it (`kubepods-besteffort-pod<uid>.slice`).

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{name:?} is not a systemd slice name: {reason}")]
pub struct SliceError {
    pub name: String,
    pub reason: &'static str,
}

/// Checks a slice name as systemd and runc accept it: `<a>[-<b>…].slice`, no `/`, no empty
/// dash-separated part; `-.slice` is the root slice.
pub fn check_slice(name: &str) -> Result<(), SliceError> {
    let err = |reason| {
        Err(SliceError {
            name: name.to_string(),
            reason,
        })
    };
    if name == "-.slice" {
        return Ok(());
    }
    let Some(stem) = name.strip_suffix(".slice") else {
        return err("it does not end in .slice");
    };
    if stem.is_empty() {
        return err("the name before .slice is empty");
    }
    if name.len() > 255 {
        return err("it is longer than 255 characters");
    }
    if stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return err("a dash-separated part is empty");
    }
    if let Some(c) = stem
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '-')))
    {
        return if c == '/' {
            err("it contains '/' (give a slice name, not a cgroup path)")
        } else {
            err("it contains a character systemd does not allow in unit names")
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_slice_names_say_why() {
        for (name, why) in [
            ("/kubepods/besteffort/pod1", "does not end in .slice"),
            ("kubepods/x.slice", "contains '/'"),
            ("a--b.slice", "dash-separated part is empty"),
            ("-a.slice", "dash-separated part is empty"),
            ("a-.slice", "dash-separated part is empty"),
            (".slice", "empty"),
            ("a b.slice", "does not allow"),
        ] {
            let e = check_slice(name).unwrap_err();
            assert!(e.to_string().contains(why), "{name}: {e}");
        }
        assert!(check_slice(&format!("{}.slice", "a".repeat(300))).is_err());
    }
}
