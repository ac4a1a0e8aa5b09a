//! The spec loader end to end: parse, validate and, when the spec is valid, render
//! every file and the runbook. Beyond "no panic" it checks what the trust rules
//! promise: diagnostics and rendered files carry no control characters (a line break
//! in a value would be a new directive), and no secret placeholder appears where the
//! spec could have put one.

#![no_main]

use std::path::Path;

use kubeha::render::{self, runbook, Content, RenderInputs};
use kubeha::spec::{load_str, PathContext};
use libfuzzer_sys::fuzz_target;

fn assert_printable(what: &str, text: &str) {
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        panic!("{what} holds control character U+{:04X}:\n{text}", c as u32);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The hostile corpus's folder, so the files its specs name exist.
    let paths = PathContext {
        spec_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/kubeha/tests/hostile"),
        home: None,
    };
    let loaded = match load_str(Path::new("fuzz.yaml"), text.to_string(), &paths) {
        Ok(loaded) => loaded,
        Err(report) => {
            assert!(report.has_errors());
            assert_printable("an error report", &report.render(false));
            return;
        }
    };
    assert_printable("a warning report", &loaded.report.render(false));
    let cluster = &loaded.cluster;
    for (_, files) in render::cluster_files(cluster, &RenderInputs::placeholders()) {
        for f in files {
            if let Content::Text(t) | Content::ManagedBlock(t) = &f.content {
                assert_printable(&f.path, t);
            }
        }
    }
    let script = runbook::render(cluster);
    assert_printable("runbook.sh", &script);
});
