//! libFuzzer target on the native decode entry (`Postprocessor::decode_batch_heads`); the
//! case and its checks: `ssd_resnet34_fuzz::Harness` (fuzz/src/lib.rs).
//!
//!     cd fuzz && cargo +nightly fuzz run decode --features libfuzzer -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssd_resnet34_fuzz::Harness;
use std::cell::RefCell;

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::default());
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| {
        if let Err(finding) = h.borrow_mut().run(data) {
            panic!("finding: {finding}");
        }
    });
});
