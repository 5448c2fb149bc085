//! The stable (libFuzzer-free) driver of the decode fuzz case (`ssd_resnet34_fuzz::Harness`):
//! random byte strings from a seeded PRNG (xorshift64*), for N cases or T seconds, each run
//! inside `catch_unwind` so that a panic is reported as a finding with its seed, not a crash.
//!
//!     cd fuzz && cargo run --release --bin random_decode -- [--cases N] [--seconds T] [--seed S]
//!
//! Prints the executions, the time, executions per second and the findings (case seeds and
//! messages); exits 1 when there is any.

use ssd_resnet34_fuzz::Harness;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let cases = get("--cases").unwrap_or(u64::MAX);
    let seconds = get("--seconds").unwrap_or(if cases == u64::MAX { 10 } else { u64::MAX / 4 });
    let seed = get("--seed").unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut harness = Harness::default();
    let mut findings = Vec::new();
    let mut bytes = Vec::new();
    let mut n = 0u64;
    std::panic::set_hook(Box::new(|_| {}));
    while n < cases && Instant::now() < deadline {
        let case_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n;
        // Mostly short cases (8..128 bytes: a few patches), one in 10 long.
        ssd_resnet34_fuzz::case_bytes(case_seed, 10, 8, 120, &mut bytes);
        match catch_unwind(AssertUnwindSafe(|| harness.run(&bytes))) {
            Ok(Ok(())) => {}
            Ok(Err(finding)) => findings.push((case_seed, format!("case {n}: {finding}"))),
            Err(panic) => {
                let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                findings.push((case_seed, format!("panic: {}", msg.unwrap_or_default())));
            }
        }
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "random_decode: {n} executions in {elapsed:.1} s ({:.0}/s), {} expected errors, {} detections checked, {} findings",
        n as f64 / elapsed,
        harness.errors,
        harness.detections,
        findings.len()
    );
    for (s, f) in findings.iter().take(20) {
        println!("  case seed {s:#x}: {f}");
    }
    std::process::exit(if findings.is_empty() { 0 } else { 1 });
}
