//! Image references come from pod specs; a parsed one must print back to a reference
//! that parses to the same thing, and its repository must be safe in a request path.
#![no_main]

use criox_formats::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = Reference::parse(text) else {
        return;
    };
    for part in reference.repository.split('/') {
        assert!(!part.is_empty() && part != "." && part != "..", "{text:?}");
    }
    assert!(
        !reference.repository.contains(['?', '#', '%', '\\']),
        "{text:?}"
    );
    let again = Reference::parse(&reference.to_string()).expect("a printed reference parses");
    assert_eq!(again, reference);
});
