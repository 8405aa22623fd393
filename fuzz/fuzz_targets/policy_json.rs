//! The trust policy (containers-policy.json) and the decisions it makes.
#![no_main]

use criox_formats::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text, "fuzz.json") else {
        return;
    };
    for (name, tag) in [("reg.io/a/b", Some("1")), ("docker.io/library/x", None)] {
        let _ = policy.check(name, tag, name);
    }
});
