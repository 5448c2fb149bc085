//! The SIMD kernels of the hot paths, each in a portable version and, on x86-64, AVX2 and
//! AVX-512 versions, and the one place where the CPU's instruction set is detected.
//!
//! - [`exp`]: float64 `exp` of 8 lanes (the survivors' softmax);
//! - [`reject`]: the quick-reject pass over the class logits (running foreground max and
//!   finite check) and the finite check of the box offsets;
//! - [`softmax`]: the exact float64 softmax of 8 anchors at once;
//!
//! (the greedy NMS kernels live with the IoU in [`crate::nms`], which dispatches on
//! [`Isa::level`]).
//!
//! # The same bits on every CPU
//!
//! Every variant of a kernel performs the same IEEE operations in the same order (a fused
//! multiply-add exactly where the portable version calls `mul_add`, which rounds once on
//! every platform; no reassociation; `max`/`min` with the operand order of the SIMD
//! instructions), so all variants give the same bits; the tests of each module compare
//! every variant the CPU supports with the portable one on adversarial inputs.
//!
//! # Detection once
//!
//! [`Isa::best`] detects the CPU's level on first use and caches it; the kernels take an
//! [`Isa`] and dispatch with a `match`, so no hot path queries the CPU. An [`Isa`] is only
//! ever made by detection ([`Isa::best`], [`Isa::supported`]) or is [`Isa::PORTABLE`], which
//! is what makes calling the `#[target_feature]` functions of its level sound.

pub(crate) mod exp;
pub(crate) mod reject;
pub(crate) mod softmax;

use std::sync::OnceLock;

/// Lanes of the float64 kernels (one AVX-512 register, two AVX2 registers).
pub(crate) const LANES: usize = 8;

/// An instruction-set level of this CPU that the kernels may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(Level);

/// The levels; read through [`Isa::level`] by kernels outside this module. Only
/// detection makes an [`Isa`] of a level, which is what makes dispatching on it sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// Plain Rust (what the compiler makes of it for the target), on every CPU.
    pub const PORTABLE: Isa = Isa(Level::Portable);

    /// The best level of this CPU: AVX-512F, else AVX2 (with FMA), else portable. Detected
    /// on the first call, then cached. The environment variable `SSD_RESNET34_ISA`
    /// (`portable`, `avx2` or `avx512`), read then, caps it, to compare the kernels.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = std::env::var("SSD_RESNET34_ISA").ok();
            let supported = Isa::supported();
            let allowed = supported.iter().position(|isa| Some(isa.name()) == cap.as_deref()).unwrap_or(supported.len() - 1);
            supported[allowed]
        })
    }

    /// Every level this CPU supports, lowest first (portable always): for tests and
    /// benchmarks that compare the variants.
    pub fn supported() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut levels = vec![Isa::PORTABLE];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                levels.push(Isa(Level::Avx2));
                if std::arch::is_x86_feature_detected!("avx512f") {
                    levels.push(Isa(Level::Avx512));
                }
            }
        }
        levels
    }

    /// The level, for a kernel's dispatch.
    #[inline]
    pub(crate) fn level(self) -> Level {
        self.0
    }

    /// The name of the level: `"portable"`, `"avx2"` or `"avx512"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => "avx512",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_is_cached_and_ordered() {
        let all = Isa::supported();
        assert_eq!(all[0], Isa::PORTABLE);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(Isa::best(), *all.last().unwrap());
        assert_eq!(Isa::best(), Isa::best());
        assert_eq!(Isa::PORTABLE.name(), "portable");
    }
}
