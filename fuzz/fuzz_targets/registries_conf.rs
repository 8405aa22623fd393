//! registries.conf and its drop-ins, then the candidates it yields for a few names.
#![no_main]

use criox_formats::reference::Reference;
use criox_formats::registries::RegistriesConf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(conf) = RegistriesConf::parse(text, "fuzz.conf") else {
        return;
    };
    for name in [
        "busybox",
        "reg.io/a/b:1",
        "localhost:5000/x",
        "docker.io/library/x",
    ] {
        let reference = Reference::parse(name).unwrap();
        let _ = conf.candidates(&reference);
    }
});
