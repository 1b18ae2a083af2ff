//! The path canonicaliser never panics, and what it accepts is a fixed point with none
//! of the shapes it exists to remove.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::proxy::path::CanonicalPath;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    for reject_parameters in [true, false] {
        let Ok(path) = CanonicalPath::parse(raw, reject_parameters) else { continue };
        let text = path.as_str();
        assert!(text.starts_with('/'));
        assert!(!text.contains("//"), "{text}");
        assert!(!text.contains('\\'), "{text}");
        assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
        for segment in text.split('/') {
            assert!(segment != "." && segment != "..", "{text}");
        }
        assert_eq!(CanonicalPath::parse(text, reject_parameters).as_ref(), Ok(&path), "not a fixed point");
    }
});
