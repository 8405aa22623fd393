//! The checks criox applies to the fields of pod and container configs. None may panic;
//! a value one accepts must print back (or re-check) to the same thing, and one it
//! refuses must come with the field of the request that holds it.
#![no_main]

use std::path::{Component, Path};

use criox_formats::cri_fields::userns::{IdMap, RANGE, UsernsMode};
use criox_formats::cri_fields::{FieldError, container, pod, quantity, userns};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    while !u.is_empty() {
        if step(&mut u).is_err() {
            break;
        }
    }
});

/// Characters the checks treat specially, so that short inputs reach past the first
/// refusal more often than arbitrary UTF-8 does.
const ALPHABET: &[char] = &[
    '0', '1', '5', '9', '.', '/', '-', '_', '=', ' ', '\0', '\n', 'k', 'M', 'G', 'E', 'i', 'm',
    'n', 'e', 't', 'a', 'b', ':',
];

fn text(u: &mut Unstructured) -> Result<String> {
    if u.arbitrary()? {
        return Ok(u.arbitrary::<&str>()?.to_string());
    }
    let len = u.int_in_range(0..=24)?;
    let mut out = String::new();
    for _ in 0..len {
        out.push(*u.choose(ALPHABET)?);
    }
    Ok(out)
}

/// A string built from pieces the checks look for (`net.`, `kernel.shm`, `..`), so that
/// accepted values are found at all.
fn pieces(u: &mut Unstructured, known: &[&str]) -> Result<String> {
    let n = u.int_in_range(0..=5)?;
    let mut out = String::new();
    for _ in 0..n {
        if u.arbitrary()? {
            out.push_str(u.choose(known)?);
        } else {
            out.push_str(&text(u)?);
        }
    }
    Ok(out)
}

fn refused(e: &FieldError, field: &str) {
    assert_eq!(e.field, field, "{e}");
    assert!(!e.message.is_empty(), "{e}");
    assert!(e.to_string().starts_with(&format!("{field}: ")), "{e}");
}

fn refused_under(e: &FieldError, prefix: &str) {
    assert!(e.field.starts_with(prefix), "{e}");
    refused(e, &e.field.clone());
}

fn step(u: &mut Unstructured) -> Result<()> {
    match u.int_in_range(0..=19)? {
        0 => check_quantity(&text(u)?),
        1 => {
            let field = *u.choose(&[
                "config.metadata.name",
                "config.metadata.namespace",
                "config.metadata.uid",
            ])?;
            let value = text(u)?;
            match pod::metadata(field, &value) {
                Ok(()) => assert!(!value.is_empty() && !value.contains(['/', '\0', '\n'])),
                Err(e) => refused(&e, field),
            }
        }
        2 => {
            let name = pieces(u, &["a", "web-0", ".", "-", "example"])?;
            match pod::hostname(&name) {
                Ok(()) if name.is_empty() => {}
                Ok(()) => {
                    assert!(name.len() <= 64, "{name:?}");
                    for label in name.split('.') {
                        assert!(!label.is_empty() && !label.starts_with('-'), "{name:?}");
                        assert!(!label.ends_with('-'), "{name:?}");
                        assert!(
                            label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                            "{name:?}"
                        );
                    }
                }
                Err(e) => refused(&e, "config.hostname"),
            }
        }
        3 => {
            let dir = pieces(u, &["/", "..", "var", "log"])?;
            match pod::log_directory(&dir) {
                Ok(()) => assert!(dir.is_empty() || clean_absolute(&dir), "{dir:?}"),
                Err(e) => refused(&e, "config.log_directory"),
            }
        }
        4 => {
            let parent = pieces(u, &["/", "..", "kubepods", ".slice"])?;
            match pod::cgroup_path(&parent) {
                Ok(()) => assert!(parent.is_empty() || clean_absolute(&parent), "{parent:?}"),
                Err(e) => refused(&e, "config.linux.cgroup_parent"),
            }
        }
        17 => {
            let parent = pieces(u, &["kubepods", "-", ".slice", "/", "besteffort", "pod"])?;
            match pod::cgroup_slice(&parent) {
                Ok(()) => assert!(
                    parent.is_empty()
                        || parent.ends_with(".slice")
                            && !parent.contains('/')
                            && parent.len() <= 255,
                    "{parent:?}"
                ),
                Err(e) => refused(&e, "config.linux.cgroup_parent"),
            }
        }
        18 => {
            let relative = pieces(u, &["app", "/", "..", ".", "0.log"])?;
            let dir = Path::new("/var/log/pods/p");
            let dir = if u.arbitrary()? { Some(dir) } else { None };
            match container::log_path(dir, &relative) {
                Ok(None) => assert!(relative.is_empty()),
                Ok(Some(path)) => {
                    let dir = dir.expect("a log path needs the pod's log directory");
                    let inside = path.strip_prefix(dir).expect("inside the log directory");
                    assert!(
                        inside
                            .components()
                            .all(|c| matches!(c, Component::Normal(_))),
                        "{relative:?} -> {path:?}"
                    );
                }
                Err(e) => refused(&e, "log_path"),
            }
        }
        5 => {
            let i = u.int_in_range(0..=3)?;
            let container_port = port(u)?;
            let host_port = port(u)?;
            let host_ip = pieces(u, &["127.0.0.1", "::", "1", ":", "."])?;
            match pod::port_mapping(i, container_port, host_port, &host_ip) {
                Ok(()) => {
                    assert!((1..=65535).contains(&container_port));
                    assert!((0..=65535).contains(&host_port));
                    assert!(host_ip.is_empty() || host_ip.parse::<std::net::IpAddr>().is_ok());
                }
                Err(e) => refused_under(&e, &format!("config.port_mappings[{i}].")),
            }
        }
        6 => {
            let key = sysctl_key(u)?;
            let value = text(u)?;
            let (host_network, host_ipc) = (u.arbitrary()?, u.arbitrary()?);
            match pod::sysctl(&key, &value, host_network, host_ipc) {
                Ok(kind) => {
                    assert!(!value.is_empty() && !value.contains(['\0', '\n']));
                    match kind {
                        pod::SysctlKind::Net => {
                            assert!(key.starts_with("net.") && !host_network, "{key}")
                        }
                        pod::SysctlKind::Ipc => assert!(!host_ipc, "{key}"),
                    }
                    // The pod owning more of its namespaces never refuses a sysctl.
                    assert_eq!(pod::sysctl(&key, &value, false, false), Ok(kind));
                }
                Err(e) => refused(&e, &format!("config.linux.sysctls[{key}]")),
            }
        }
        7 => {
            let size = text(u)?;
            match pod::shm_size(&size) {
                Ok(bytes) => {
                    assert!(bytes > 0);
                    assert_eq!(quantity::parse(&size), Ok(bytes));
                }
                Err(e) => refused(&e, "config.annotations[io.criox.shm-size]"),
            }
        }
        8 => {
            let key = *u.choose(&[pod::INGRESS_BANDWIDTH, pod::EGRESS_BANDWIDTH])?;
            let rate = text(u)?;
            match pod::bandwidth(key, &rate) {
                Ok(bits) => assert_eq!(quantity::parse(&rate), Ok(bits)),
                Err(e) => refused(&e, &format!("config.annotations[{key}]")),
            }
        }
        9 => check_userns(u)?,
        10 => {
            let flags: [bool; 4] = u.arbitrary()?;
            match userns::check_pod(flags[0], flags[1], flags[2], flags[3]) {
                Ok(()) => assert_eq!(flags, [false; 4]),
                Err(e) => refused_under(&e, "config.linux.security_context."),
            }
        }
        11 => {
            let field = *u.choose(&["envs[0].key", "image config Env"])?;
            let name = text(u)?;
            match container::env_name(field, &name) {
                Ok(()) => assert!(!name.is_empty() && !name.contains(['=', '\0'])),
                Err(e) => refused(&e, field),
            }
        }
        12 => {
            let cri = pieces(u, &["/", "app", " "])?;
            let image = if u.arbitrary()? {
                Some(pieces(u, &["/", "srv", " "])?)
            } else {
                None
            };
            match container::working_dir(&cri, image.as_deref()) {
                Ok(dir) => {
                    assert!(dir.starts_with('/'), "{dir:?}");
                    if !cri.is_empty() {
                        assert_eq!(dir, cri);
                    }
                    assert_eq!(container::working_dir(&dir, None).as_ref(), Ok(&dir));
                }
                Err(e) => refused(&e, "working_dir"),
            }
        }
        13 => {
            let field = "linux.security_context.masked_paths";
            let n = u.int_in_range(0..=3)?;
            let paths = (0..n)
                .map(|_| pieces(u, &["/", "proc", "kcore"]))
                .collect::<Result<Vec<_>>>()?;
            match container::absolute_paths(field, &paths) {
                Ok(()) => assert!(paths.iter().all(|p| p.starts_with('/'))),
                Err(e) => refused(&e, field),
            }
        }
        14 => {
            let raw = sysctl_key(u)?;
            let shared = container::SharedWithNode {
                network: u.arbitrary()?,
                ipc: u.arbitrary()?,
                uts: u.arbitrary()?,
            };
            match container::sysctl(&raw, shared) {
                Ok(name) => {
                    assert_eq!(name, container::sysctl_name(&raw));
                    assert!(container::sysctl_namespace(&name).is_some(), "{raw:?}");
                    // Swapping '.' and '/' is its own inverse.
                    if name.contains('/') {
                        assert_eq!(container::sysctl_name(&name), raw);
                    }
                    let own = container::SharedWithNode::default();
                    assert_eq!(container::sysctl(&raw, own).as_ref(), Ok(&name));
                }
                Err(e) => refused(&e, "linux.sysctls"),
            }
        }
        15 => {
            let i = u.int_in_range(0..=3)?;
            let path = pieces(u, &["/", "..", ".", "data", "//"])?;
            match container::mount_destination(i, &path) {
                Ok(dest) => {
                    let printed = dest.to_str().expect("made of the UTF-8 input");
                    assert!(clean_absolute(printed), "{path:?} -> {printed:?}");
                    assert!(
                        dest.components()
                            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
                        "{path:?}"
                    );
                    assert_eq!(container::mount_destination(i, printed).as_ref(), Ok(&dest));
                }
                Err(e) => refused(&e, &format!("mounts[{i}].container_path")),
            }
        }
        16 => {
            let i = u.int_in_range(0..=3)?;
            let path = pieces(u, &["/", "..", "tmp"])?;
            match container::mount_source(i, &path) {
                Ok(()) => assert!(path.starts_with('/'), "{path:?}"),
                Err(e) => refused(&e, &format!("mounts[{i}].host_path")),
            }
        }
        _ => {
            let (i, j) = (u.int_in_range(0..=3)?, u.int_in_range(0..=3)?);
            let option = if u.arbitrary()? {
                u.choose(container::BIND_OPTIONS)?.to_string()
            } else {
                text(u)?
            };
            match container::bind_option(i, j, &option) {
                Ok(()) => assert!(container::BIND_OPTIONS.contains(&option.as_str())),
                Err(e) => refused(&e, &format!("mounts[{i}].mount_options[{j}]")),
            }
        }
    }
    Ok(())
}

fn clean_absolute(path: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute() && !p.components().any(|c| c == Component::ParentDir)
}

fn port(u: &mut Unstructured) -> Result<i32> {
    Ok(match u.int_in_range(0..=2)? {
        0 => u.int_in_range(-2..=65537)?,
        1 => *u.choose(&[0, 1, 65535, 65536, -1])?,
        _ => u.arbitrary()?,
    })
}

fn sysctl_key(u: &mut Unstructured) -> Result<String> {
    pieces(
        u,
        &[
            "net.",
            "net/",
            "ipv4",
            "kernel.shm",
            "kernel.sem",
            "kernel.shm_rmid_forced",
            "kernel.domainname",
            "fs.mqueue.",
            "vm.",
            ".",
            "/",
        ],
    )
}

/// Accepted: a parse of the value's decimal form, and of the value in every unit that
/// divides it, is the value again; a fraction lands between its floor and the next
/// whole unit. Refused: the message quotes the text.
fn check_quantity(text: &str) {
    let value = match quantity::parse(text) {
        Ok(value) => value,
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&format!("{:?}", text.trim())), "{message}");
            return;
        }
    };
    assert_eq!(quantity::parse(&value.to_string()), Ok(value));
    for unit in [
        quantity::Unit::Kilo,
        quantity::Unit::Mega,
        quantity::Unit::Giga,
        quantity::Unit::Exa,
        quantity::Unit::Kibi,
        quantity::Unit::Mebi,
        quantity::Unit::Exbi,
    ] {
        if value % unit.factor() == 0 {
            let printed = format!("{}{}", value / unit.factor(), unit.suffix());
            assert_eq!(quantity::parse(&printed), Ok(value), "{printed}");
        }
    }
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    let whole = number.split('.').next().unwrap_or("");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .expect("an accepted quantity has a whole number that fits")
    };
    let floor = quantity::parse(&format!("{whole}{suffix}")).expect("the floor of a quantity");
    assert!(floor <= value, "{text:?}");
    if let Some(next) = whole.checked_add(1)
        && let Ok(ceiling) = quantity::parse(&format!("{next}{suffix}"))
    {
        assert!(value <= ceiling, "{text:?}");
    }
}

fn id_map(u: &mut Unstructured) -> Result<IdMap> {
    let id = |u: &mut Unstructured| -> Result<u32> {
        Ok(if u.arbitrary()? {
            u32::from(u.int_in_range(0u16..=u16::MAX)?) * RANGE
        } else {
            u.arbitrary()?
        })
    };
    Ok(IdMap {
        host_id: id(u)?,
        container_id: if u.arbitrary()? { 0 } else { id(u)? },
        length: id(u)?,
    })
}

fn check_userns(u: &mut Unstructured) -> Result<()> {
    let mode = match u.int_in_range(0..=2)? {
        0 => UsernsMode::Pod,
        1 => UsernsMode::Node,
        _ => UsernsMode::Other(u.arbitrary()?),
    };
    let maps = |u: &mut Unstructured| -> Result<Vec<IdMap>> {
        let n = u.int_in_range(0..=2)?;
        (0..n).map(|_| id_map(u)).collect()
    };
    let uids = maps(u)?;
    let gids = maps(u)?;
    match userns::parse(mode, &uids, &gids) {
        Ok(None) => {
            assert_eq!(mode, UsernsMode::Node);
            assert!(uids.is_empty() && gids.is_empty());
        }
        Ok(Some(ns)) => {
            assert_eq!(mode, UsernsMode::Pod);
            assert_eq!(
                (uids.as_slice(), gids.as_slice()),
                (&[ns.uids][..], &[ns.gids][..])
            );
            for map in [ns.uids, ns.gids] {
                assert_eq!(map.container_id, 0);
                assert!(map.length >= RANGE, "{map:?}");
                assert!(map.host_id > 0, "{map:?}");
                assert!(u64::from(map.host_id) + u64::from(map.length) <= u64::from(u32::MAX));
                let line = map.map_line();
                let numbers: Vec<u32> = line
                    .split_whitespace()
                    .map(|n| n.parse().unwrap())
                    .collect();
                assert_eq!(numbers, [map.container_id, map.host_id, map.length]);
            }
            assert_eq!(
                userns::parse(UsernsMode::Pod, &[ns.uids], &[ns.gids]),
                Ok(Some(ns))
            );
        }
        Err(e) => {
            let under = "config.linux.security_context.namespace_options.userns_options.";
            refused_under(&e, under);
            let rest = &e.field[under.len()..];
            assert!(
                rest == "mode" || rest.starts_with("uids") || rest.starts_with("gids"),
                "{e}"
            );
        }
    }
    Ok(())
}
