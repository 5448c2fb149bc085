//! The stable (libFuzzer-free) driver of the differential kernel case
//! (`ssd_resnet34_fuzz::KernelHarness`: the score pass of one level over a range of anchors
//! and the NMS, on every instruction set of this CPU, against plain oracles): random byte
//! strings from a seeded PRNG (xorshift64*), for N cases or T seconds, each run inside
//! `catch_unwind` so that a panic is reported as a finding with its seed, not a crash.
//!
//!     cd fuzz && cargo run --release --bin random_kernels -- [--cases N] [--seconds T] [--seed S]
//!     cd fuzz && cargo run --release --bin random_kernels -- --case-seed 0x...   # replay one finding
//!
//! Prints the executions, the time, executions per second, what was compared and the
//! findings (case seeds and messages); exits 1 when there is any.

use ssd_resnet34_fuzz::KernelHarness;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// The case's bytes from its seed: mostly short (16..166 bytes), one in 16 long.
fn case_bytes(case_seed: u64, bytes: &mut Vec<u8>) {
    ssd_resnet34_fuzz::case_bytes(case_seed, 16, 16, 150, bytes);
}

fn parse(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| parse(v));
    let mut harness = KernelHarness::default();
    let mut bytes = Vec::new();
    if let Some(case_seed) = get("--case-seed") {
        case_bytes(case_seed, &mut bytes);
        println!("case seed {case_seed:#x}: {} bytes {bytes:?}", bytes.len());
        match harness.run(&bytes) {
            Ok(()) => println!("no finding"),
            Err(f) => {
                println!("finding: {f}");
                std::process::exit(1);
            }
        }
        return;
    }
    let cases = get("--cases").unwrap_or(u64::MAX);
    let seconds = get("--seconds").unwrap_or(if cases == u64::MAX { 10 } else { u64::MAX / 4 });
    let seed = get("--seed").unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut findings = Vec::new();
    let mut n = 0u64;
    std::panic::set_hook(Box::new(|_| {}));
    while n < cases {
        // The clock is read every 256 cases (a case takes microseconds).
        if n % 256 == 0 && Instant::now() >= deadline {
            break;
        }
        let case_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n;
        case_bytes(case_seed, &mut bytes);
        match catch_unwind(AssertUnwindSafe(|| harness.run(&bytes))) {
            Ok(Ok(())) => {}
            Ok(Err(finding)) => findings.push((case_seed, format!("case {n}: {finding}"))),
            Err(panic) => {
                let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                findings.push((case_seed, format!("case {n}: panic: {}", msg.unwrap_or_default())));
                // A panic may leave the buffers written: start from clean ones.
                let stats = harness.stats.clone();
                harness = KernelHarness::default();
                harness.stats = stats;
            }
        }
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = &harness.stats;
    println!(
        "random_kernels: {n} executions in {elapsed:.1} s ({:.0}/s), {} findings; isas {:?}",
        n as f64 / elapsed,
        findings.len(),
        ssd_resnet34::Isa::supported().iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    println!(
        "  score: {} cases ({} with NaN/inf), {} kernel runs, {} anchors, {} candidates, {} pairs vs libm exp ({} differ by 1 ulp)",
        s.score_cases, s.non_finite, s.kernel_runs, s.anchors, s.candidates, s.libm_pairs, s.libm_one_ulp
    );
    println!("  nms: {} cases ({} bad inputs refused), {} kept boxes", s.nms_cases, s.nms_errors, s.kept);
    for (cs, f) in findings.iter().take(20) {
        println!("  case seed {cs:#x}: {f}");
    }
    std::process::exit(if findings.is_empty() { 0 } else { 1 });
}
