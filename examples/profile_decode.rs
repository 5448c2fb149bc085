//! Runs the native decode of one fixture image many times, one way, for profilers
//! (`valgrind --tool=callgrind` instruction counts, which are stable on a noisy machine)
//! and a per-stage timing on the calling thread.
//!
//!     cargo run --release --example profile_decode -- target/fixtures/dense_389812 serial 50
//!     valgrind --tool=callgrind target/release/examples/profile_decode <dir> serial 20
//!
//! Modes: `serial` (`Parallelism::Serial`), `within` (`Parallelism::WithinImage`, the default
//! of a batch of one), `f16` (the float16 conversion of the heads, batch 1), `stages` (serial,
//! printing the median time of each stage). Fixtures: `python benches/make_fixtures.py`.

use ndarray::ArrayD;
use ndarray_npy::read_npy;
use ssd_resnet34::{Head, Parallelism, Params, Postprocessor, LEVELS, NUM_LEVELS, NUM_OUTPUTS};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: profile_decode <fixture dir> <serial|within|f16|stages> [iterations]");
    let mode = args.get(2).map(String::as_str).unwrap_or("serial");
    let iterations: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50);
    let tensors: Vec<Vec<f32>> = (0..NUM_OUTPUTS)
        .map(|k| {
            let a: ArrayD<f32> = read_npy(format!("{dir}/outputs_{k}.npy")).expect("a fixture tensor");
            a.iter().copied().collect()
        })
        .collect();
    let logits: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| &tensors[l][..LEVELS[l].logits_len()]);
    let offsets: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| &tensors[NUM_LEVELS + l][..LEVELS[l].offsets_len()]);
    let halves: Vec<Vec<half::f16>> = tensors.iter().map(|t| t.iter().map(|&x| half::f16::from_f32(x)).collect()).collect();
    let pp = Postprocessor::new(Params::default()).expect("default parameters");
    let mut detections = 0;
    let mut stage_ms: [Vec<f64>; 4] = Default::default();
    let start = Instant::now();
    for _ in 0..iterations {
        match mode {
            "serial" => detections = black_box(pp.decode_image_with(logits, offsets, Parallelism::Serial)).unwrap().len(),
            "within" => detections = black_box(pp.decode_image_with(logits, offsets, Parallelism::WithinImage)).unwrap().len(),
            "f16" => {
                let l: [Head; NUM_LEVELS] = std::array::from_fn(|l| Head::F16(&halves[l][..LEVELS[l].logits_len()]));
                let o: [Head; NUM_LEVELS] = std::array::from_fn(|l| Head::F16(&halves[NUM_LEVELS + l][..LEVELS[l].offsets_len()]));
                detections = black_box(pp.decode_batch_heads(l, o, 1)).unwrap()[0].len();
            }
            "stages" => {
                let t0 = Instant::now();
                let mut c = pp.score_pass(logits, Parallelism::Serial).unwrap();
                let t1 = Instant::now();
                let boxes = pp.select_and_decode(&mut c, offsets);
                let t2 = Instant::now();
                let kept = pp.suppress(&boxes);
                let t3 = Instant::now();
                detections = pp.merge(kept).len();
                let t4 = Instant::now();
                for (s, (a, b)) in stage_ms.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)]) {
                    s.push((b - a).as_secs_f64() * 1e3);
                }
            }
            other => panic!("unknown mode {other}"),
        }
    }
    let total = start.elapsed().as_secs_f64() * 1e3 / iterations as f64;
    println!("{mode}: {total:.3} ms per decode (mean of {iterations}), {detections} detections");
    if mode == "stages" {
        for (name, s) in ["score_pass", "select_and_decode", "suppress", "merge"].iter().zip(&mut stage_ms) {
            s.sort_by(f64::total_cmp);
            println!("  {name}: median {:.3} ms", s[s.len() / 2]);
        }
    }
}
