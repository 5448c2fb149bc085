//! libFuzzer target on the kernels: the score pass of one level over a range of anchors and
//! the NMS, on every instruction set of this CPU, against plain oracles; the case and its
//! checks: `ssd_resnet34_fuzz::KernelHarness` (fuzz/src/kernels.rs).
//!
//!     cd fuzz && cargo +nightly fuzz run kernels --features libfuzzer -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssd_resnet34_fuzz::KernelHarness;
use std::cell::RefCell;

thread_local! {
    static HARNESS: RefCell<KernelHarness> = RefCell::new(KernelHarness::default());
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| {
        if let Err(finding) = h.borrow_mut().run(data) {
            panic!("finding: {finding}");
        }
    });
});
