//! Criterion benchmarks of the native postprocessor, stage by stage and whole.
//!
//! Inputs: every fixture set under `target/fixtures/<name>/outputs_<k>.npy` (the model
//! card's 12 float32 tensors, batch axis first; written by `python benches/make_fixtures.py`;
//! `SSD_FIXTURES_DIR` overrides the folder): the oracle's outputs for COCO images (a few
//! hundred candidates), `dense_*` (2,000-4,000 candidates, the density of a trained
//! model), `random_logits` (Gaussian logits: the worst case for the score pass and NMS).
//!
//! Stages of one image (batch item 0), the `Postprocessor` methods of the same names:
//! `score_pass` (finite check + quick reject + softmax + threshold; serial and with the
//! anchors split across the rayon pool), `select_and_decode` (per-class top-k and box
//! decoding), `nms` (`suppress`: per-class greedy NMS), `merge`, and the whole
//! `decode_image` (which also checks the offsets for NaN/inf and runs stages 2 and 3 class
//! by class; serial and parallel, where two halves of the classes run at once);
//! `decode_batch` when a set has N > 1.
//!
//! Run: `cargo bench --bench decoder` (optionally a filter, e.g. `-- decode_image`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use ssd_resnet34::{check_output_shape, Isa, OutputId, Parallelism, Params, Postprocessor, LEVELS, NUM_LEVELS, NUM_OUTPUTS};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One input set: the 12 tensors in C order, batch `n`.
struct InputSet {
    name: String,
    batch: usize,
    tensors: Vec<Vec<f32>>,
}

impl InputSet {
    fn logits(&self, item: usize) -> [&[f32]; NUM_LEVELS] {
        std::array::from_fn(|l| {
            let len = LEVELS[l].logits_len();
            &self.tensors[l][item * len..(item + 1) * len]
        })
    }

    fn offsets(&self, item: usize) -> [&[f32]; NUM_LEVELS] {
        std::array::from_fn(|l| {
            let len = LEVELS[l].offsets_len();
            &self.tensors[NUM_LEVELS + l][item * len..(item + 1) * len]
        })
    }

    fn all_logits(&self) -> [&[f32]; NUM_LEVELS] {
        std::array::from_fn(|l| self.tensors[l].as_slice())
    }

    fn all_offsets(&self) -> [&[f32]; NUM_LEVELS] {
        std::array::from_fn(|l| self.tensors[NUM_LEVELS + l].as_slice())
    }
}

fn output_id(k: usize) -> OutputId {
    if k < NUM_LEVELS {
        OutputId::logits(k)
    } else {
        OutputId::offsets(k - NUM_LEVELS)
    }
}

fn fixtures_dir() -> PathBuf {
    std::env::var_os("SSD_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("fixtures"))
}

fn load_set(dir: &Path) -> Result<InputSet, String> {
    let mut tensors = Vec::with_capacity(NUM_OUTPUTS);
    let mut batch = None;
    for k in 0..NUM_OUTPUTS {
        let path = dir.join(format!("outputs_{k}.npy"));
        let a: ArrayD<f32> = read_npy(&path).map_err(|e| format!("{}: {e} (expected a float32 .npy)", path.display()))?;
        let n = check_output_shape(output_id(k), a.shape(), batch).map_err(|e| format!("{}: {e}", path.display()))?;
        batch = Some(n);
        tensors.push(a.as_standard_layout().iter().copied().collect());
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(InputSet { name, batch: batch.unwrap_or(0), tensors })
}

/// Every fixture set; panics with instructions when there are none.
fn load_fixtures() -> Vec<InputSet> {
    let dir = fixtures_dir();
    let hint = "run `python benches/make_fixtures.py` (with the project venv) to write them";
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("no fixtures at {}: {e}; {hint}", dir.display()));
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("outputs_0.npy").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        panic!("no fixture sets (folders with outputs_0.npy .. outputs_11.npy) in {}; {hint}", dir.display());
    }
    dirs.iter()
        .map(|d| load_set(d).unwrap_or_else(|e| panic!("bad fixture: {e}; {hint}")))
        .filter(|s| s.batch > 0)
        .collect()
}

fn bench_set(c: &mut Criterion, set: &InputSet) {
    let pp = Postprocessor::new(Params::default()).expect("default parameters are valid");
    let (logits, offsets) = (set.logits(0), set.offsets(0));
    let name = &set.name;

    let candidates = pp.score_pass(logits, Parallelism::Serial).expect("finite inputs");
    let boxes = pp.select_and_decode(&mut candidates.clone(), offsets);
    let kept = pp.suppress(&boxes);
    let det = pp.merge(kept.clone());
    eprintln!(
        "{name}: batch {}, {} candidates, {} after top-k, {} after NMS, {} detections",
        set.batch,
        candidates.len(),
        boxes.items.len(),
        kept.len(),
        det.len()
    );

    let mut g = c.benchmark_group("score_pass");
    for (label, par) in [("serial", Parallelism::Serial), ("parallel", Parallelism::WithinImage)] {
        g.bench_with_input(BenchmarkId::new(label, name), &(), |b, _| b.iter(|| pp.score_pass(black_box(logits), par)));
    }
    g.finish();

    let mut g = c.benchmark_group("select_and_decode");
    g.bench_with_input(BenchmarkId::from_parameter(name), &(), |b, _| {
        b.iter_batched_ref(
            || candidates.clone(),
            |cands| pp.select_and_decode(cands, black_box(offsets)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("nms");
    g.bench_with_input(BenchmarkId::from_parameter(name), &(), |b, _| b.iter(|| pp.suppress(black_box(&boxes))));
    g.finish();

    let mut g = c.benchmark_group("merge");
    g.bench_with_input(BenchmarkId::from_parameter(name), &(), |b, _| {
        b.iter_batched(|| kept.clone(), |k| pp.merge(k), criterion::BatchSize::SmallInput)
    });
    g.finish();

    let mut g = c.benchmark_group("decode_image");
    for (label, par) in [("serial", Parallelism::Serial), ("parallel", Parallelism::WithinImage)] {
        g.bench_with_input(BenchmarkId::new(label, name), &(), |b, _| {
            b.iter(|| pp.decode_image_with(black_box(logits), black_box(offsets), par))
        });
    }
    g.finish();

    if set.batch > 1 {
        let mut g = c.benchmark_group("decode_batch");
        g.bench_with_input(BenchmarkId::new(format!("n{}", set.batch), name), &(), |b, _| {
            b.iter(|| pp.decode_batch(black_box(set.all_logits()), black_box(set.all_offsets()), set.batch))
        });
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    eprintln!("kernels: {}", Isa::best().name());
    for set in &load_fixtures() {
        bench_set(c, set);
    }
}

criterion_group! {
    name = decoder;
    config = Criterion::default().sample_size(40).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(decoder);
