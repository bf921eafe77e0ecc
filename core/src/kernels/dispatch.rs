//! Capability tokens, CPU detection, the [`Kernel`] choice, and dispatch.
//!
//! A SIMD kernel is only sound on a CPU that has its ISA. So each ISA has a
//! zero-sized token that can only be made where the ISA is known to be
//! present: safely with `new()` when the build already assumes it
//! (`-C target-feature`, `-C target-cpu`), or with `unsafe new_unchecked()`
//! by a caller that checked. A [`Kernel`] value carries its token, so
//! holding one is the proof, and [`Mlp::forward`] dispatches with one
//! `match`.
//!
//! Which kernels this CPU can run is answered here and nowhere else:
//! [`CpuFeatures::detect`] asks the CPU at run time with the `std` feature
//! (as memchr does; the host turns it on) and falls back to the build's
//! target features without it, so the core stays `no_std`.
//! [`Kernel::runnable`] lists the kernels for those features,
//! [`Kernel::from_name`] picks one by name and [`Kernel::best`] the
//! fastest:
//!
//! ```
//! use cm_core::kernels::{CpuFeatures, Kernel};
//! let cpu = CpuFeatures::detect();
//! let k = Kernel::from_name("scalar", cpu).unwrap();
//! assert_eq!(k.name(), "scalar");
//! assert_eq!(Kernel::runnable(cpu).next(), Some(Kernel::Scalar));
//! assert!(Kernel::from_name("sse9", cpu).is_err());
//! ```

use core::fmt;

use super::{Inputs, Mlp};
use crate::schema::{H1, H2};

/// Proof that the CPU has AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2FmaF16c(());

#[cfg(target_arch = "x86_64")]
impl Avx2FmaF16c {
    /// `Some` when this build already requires AVX2, FMA and F16C.
    pub fn new() -> Option<Self> {
        if cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        )) {
            Some(Avx2FmaF16c(()))
        } else {
            None
        }
    }

    /// # Safety
    /// The CPU that runs the kernels must support AVX2, FMA and F16C, e.g.
    /// all three `std::is_x86_feature_detected!` checks returned true.
    pub const unsafe fn new_unchecked() -> Self {
        Avx2FmaF16c(())
    }
}

/// Proof that the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512F(());

#[cfg(target_arch = "x86_64")]
impl Avx512F {
    /// `Some` when this build already requires AVX-512F.
    pub fn new() -> Option<Self> {
        if cfg!(target_feature = "avx512f") {
            Some(Avx512F(()))
        } else {
            None
        }
    }

    /// # Safety
    /// The CPU that runs the kernels must support AVX-512F
    /// (`std::is_x86_feature_detected!("avx512f")`).
    pub const unsafe fn new_unchecked() -> Self {
        Avx512F(())
    }
}

/// Proof that the CPU has NEON (part of the aarch64 baseline).
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeonToken(());

#[cfg(target_arch = "aarch64")]
impl NeonToken {
    /// `Some` when this build requires NEON, which every standard aarch64
    /// target does.
    pub fn new() -> Option<Self> {
        if cfg!(target_feature = "neon") {
            Some(NeonToken(()))
        } else {
            None
        }
    }

    /// # Safety
    /// The CPU that runs the kernels must support NEON
    /// (`std::arch::is_aarch64_feature_detected!("neon")`).
    pub const unsafe fn new_unchecked() -> Self {
        NeonToken(())
    }
}

/// Which kernel implementation runs a forward pass. Each is named by the
/// ISA it needs ([`Kernel::name`]); the weight storage is the build's
/// ([`super::W_NAME`]), and the code for it is in a module named for both
/// (`dense_f16w_avx2_fma_f16c`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kernel {
    /// Portable reference implementation (`scalar`).
    Scalar,
    /// AVX2 + FMA + F16C, 8 lanes (`avx2-fma-f16c`).
    #[cfg(target_arch = "x86_64")]
    Avx2FmaF16c(Avx2FmaF16c),
    /// AVX-512F, 16 lanes (`avx512f`).
    #[cfg(target_arch = "x86_64")]
    Avx512F(Avx512F),
    /// NEON, 4 lanes (`neon`).
    #[cfg(target_arch = "aarch64")]
    Neon(NeonToken),
}

/// CPU features, the input to kernel selection; [`CpuFeatures::detect`]
/// gives this CPU's.
///
/// Fields are private: a `true` for a feature the CPU lacks would let safe
/// code run an illegal instruction, so the only constructors are the
/// `unsafe` [`CpuFeatures::new_unchecked`] and the safe
/// [`CpuFeatures::detect`] and [`CpuFeatures::compile_time`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    avx2_fma_f16c: bool,
    avx512f: bool,
    neon: bool,
}

impl CpuFeatures {
    /// No SIMD at all: only the scalar kernel.
    pub const NONE: CpuFeatures = CpuFeatures {
        avx2_fma_f16c: false,
        avx512f: false,
        neon: false,
    };

    /// What this build's compile-time target features guarantee.
    pub const fn compile_time() -> CpuFeatures {
        CpuFeatures {
            avx2_fma_f16c: cfg!(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma",
                target_feature = "f16c"
            )),
            avx512f: cfg!(all(target_arch = "x86_64", target_feature = "avx512f")),
            neon: cfg!(all(target_arch = "aarch64", target_feature = "neon")),
        }
    }

    /// Features found at run time. A flag for another architecture than the
    /// one compiled for is ignored.
    ///
    /// # Safety
    /// Every `true` must hold for the CPU that runs the kernels:
    /// `avx2_fma_f16c` needs all of `is_x86_feature_detected!("avx2")`,
    /// `("fma")` and `("f16c")`; `avx512f` needs `("avx512f")`; `neon` needs
    /// `is_aarch64_feature_detected!("neon")`.
    pub const unsafe fn new_unchecked(
        avx2_fma_f16c: bool,
        avx512f: bool,
        neon: bool,
    ) -> CpuFeatures {
        CpuFeatures {
            avx2_fma_f16c,
            avx512f,
            neon,
        }
    }

    /// What the CPU running this code has: the one answer to "which kernels
    /// can this CPU run" for the host, the tests and the benches.
    ///
    /// With the `std` feature (and in this crate's own tests) the CPU is
    /// asked at run time through std's feature-detection macros, which
    /// cache their answer, so calling this again costs a few loads. Without
    /// `std` nothing can ask the CPU, and this is
    /// [`CpuFeatures::compile_time`]: a SIMD kernel is then chosen only when
    /// the build already assumes its ISA (`-C target-cpu`).
    pub fn detect() -> CpuFeatures {
        #[cfg(any(test, feature = "std"))]
        {
            run_time()
        }
        #[cfg(not(any(test, feature = "std")))]
        {
            CpuFeatures::compile_time()
        }
    }
}

/// The CPU's features, asked at run time (needs std).
#[cfg(any(test, feature = "std"))]
fn run_time() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2_fma_f16c = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let avx512f = std::is_x86_feature_detected!("avx512f");
        // SAFETY: both flags come straight from the CPUID-based detection
        // macros, for exactly the features `new_unchecked` names.
        unsafe { CpuFeatures::new_unchecked(avx2_fma_f16c, avx512f, false) }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let neon = std::arch::is_aarch64_feature_detected!("neon");
        // SAFETY: the flag comes straight from the run-time detection macro.
        unsafe { CpuFeatures::new_unchecked(false, false, neon) }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        CpuFeatures::NONE
    }
}

/// Why a kernel name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// Neither one of [`Kernel::NAMES`] nor an alias of one.
    UnknownName,
    /// A kernel for another CPU architecture than this build's (its name).
    OtherArch(&'static str),
    /// This architecture's kernel (its name), but the CPU lacks its features.
    CpuLacks(&'static str),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::UnknownName => write!(
                f,
                "unknown kernel (expected one of: scalar, avx2-fma-f16c, avx512f, neon; \
                 avx2 and avx512 are accepted for the two x86_64 ones)"
            ),
            KernelError::OtherArch(k) => write!(
                f,
                "kernel {k} is for another CPU architecture than this build"
            ),
            KernelError::CpuLacks(k) => {
                let needs = SPECS
                    .iter()
                    .find(|s| s.name == *k)
                    .map_or("nothing", |s| s.needs);
                write!(f, "kernel {k} needs {needs} and this CPU lacks it")
            }
        }
    }
}

/// One kernel's names and needs, for lookup and messages.
struct Spec {
    /// The name: its ISA, lowercase, features joined by `-`.
    name: &'static str,
    /// The name it had before kernels were named by ISA, still accepted.
    alias: &'static str,
    /// Its CPU features, for error messages.
    needs: &'static str,
    /// Whether this build's architecture has it at all.
    this_arch: bool,
}

/// Every kernel on any architecture, in [`Kernel::NAMES`] order.
const SPECS: [Spec; 4] = [
    Spec {
        name: "scalar",
        alias: "scalar",
        needs: "nothing",
        this_arch: true,
    },
    Spec {
        name: "avx2-fma-f16c",
        alias: "avx2",
        needs: "AVX2, FMA and F16C",
        this_arch: cfg!(target_arch = "x86_64"),
    },
    Spec {
        name: "avx512f",
        alias: "avx512",
        needs: "AVX-512F",
        this_arch: cfg!(target_arch = "x86_64"),
    },
    Spec {
        name: "neon",
        alias: "neon",
        needs: "NEON",
        this_arch: cfg!(target_arch = "aarch64"),
    },
];

impl Kernel {
    /// Every kernel name `--kernel` accepts, on any architecture (the old
    /// names `avx2` and `avx512` are accepted too, see [`Kernel::from_name`]).
    pub const NAMES: [&'static str; 4] = ["scalar", "avx2-fma-f16c", "avx512f", "neon"];

    /// The kernel's name: the ISA it needs, as used by `--kernel` and shown
    /// in `/health`, the start-up log and `cm_kernel_info`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2FmaF16c(_) => "avx2-fma-f16c",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512F(_) => "avx512f",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(_) => "neon",
        }
    }

    /// The kernel called `name` (or its old name: `avx2`, `avx512`), if
    /// `cpu` can run it.
    pub fn from_name(name: &str, cpu: CpuFeatures) -> Result<Kernel, KernelError> {
        let spec = SPECS
            .iter()
            .find(|s| s.name == name || s.alias == name)
            .ok_or(KernelError::UnknownName)?;
        if !spec.this_arch {
            return Err(KernelError::OtherArch(spec.name));
        }
        let _ = cpu;
        match spec.name {
            "scalar" => return Ok(Kernel::Scalar),
            #[cfg(target_arch = "x86_64")]
            "avx2-fma-f16c" if cpu.avx2_fma_f16c => {
                // SAFETY: CpuFeatures::new_unchecked's contract (or the
                // compile-time target features) guarantee the flag.
                return Ok(Kernel::Avx2FmaF16c(unsafe { Avx2FmaF16c::new_unchecked() }));
            }
            #[cfg(target_arch = "x86_64")]
            "avx512f" if cpu.avx512f => {
                // SAFETY: as above.
                return Ok(Kernel::Avx512F(unsafe { Avx512F::new_unchecked() }));
            }
            #[cfg(target_arch = "aarch64")]
            "neon" if cpu.neon => {
                // SAFETY: as above.
                return Ok(Kernel::Neon(unsafe { NeonToken::new_unchecked() }));
            }
            _ => {}
        }
        Err(KernelError::CpuLacks(spec.name))
    }

    /// Every kernel `cpu` can run, scalar first, each once. With
    /// [`CpuFeatures::detect`] this is the list the tests and benches run.
    pub fn runnable(cpu: CpuFeatures) -> impl Iterator<Item = Kernel> {
        Kernel::NAMES
            .iter()
            .filter_map(move |n| Kernel::from_name(n, cpu).ok())
    }

    /// The fastest kernel `cpu` can run: AVX-512F, then AVX2, then NEON,
    /// then scalar. AVX-512 ranks first because it does the same work in
    /// half the instructions; it has not been measured on the development
    /// machine, which lacks it (`--kernel avx2-fma-f16c` overrides).
    pub fn best(cpu: CpuFeatures) -> Kernel {
        ["avx512f", "avx2-fma-f16c", "neon"]
            .iter()
            .find_map(|n| Kernel::from_name(n, cpu).ok())
            .unwrap_or(Kernel::Scalar)
    }
}

/// Expands to a `match` that runs `$f` from the kernel's module.
macro_rules! dispatch {
    ($kernel:expr, $f:ident($($arg:expr),*)) => {
        match $kernel {
            Kernel::Scalar => scalar_entry::$f($($arg),*),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2FmaF16c(_) => {
                #[cfg(test)]
                calls::bump(&calls::AVX2);
                // SAFETY: the Avx2FmaF16c token proves AVX2, FMA and F16C.
                unsafe { super::avx2::kernel::$f($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512F(_) => {
                #[cfg(test)]
                calls::bump(&calls::AVX512);
                // SAFETY: the Avx512F token proves AVX-512F.
                unsafe { super::avx512::kernel::$f($($arg),*) }
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(_) => {
                #[cfg(test)]
                calls::bump(&calls::NEON);
                // SAFETY: the NeonToken proves NEON.
                unsafe { super::neon::kernel::$f($($arg),*) }
            }
        }
    };
}

/// The scalar kernel with the SIMD kernels' signatures: it takes the
/// prepared inputs' clamped values (and clamps them again, which changes
/// nothing) and runs every input, zero or not.
mod scalar_entry {
    use super::super::{scalar, Inputs, Mlp};
    use crate::schema::H1;
    pub(super) use scalar::{layer2, output};

    pub(super) fn forward(m: &Mlp, x: &Inputs) -> f32 {
        scalar::forward(m, x.values())
    }

    pub(super) fn layer1(m: &Mlp, x: &Inputs) -> [f32; H1] {
        scalar::layer1(m, x.values())
    }
}

#[inline]
pub(super) fn forward(m: &Mlp, k: Kernel, x: &Inputs) -> f32 {
    dispatch!(k, forward(m, x))
}

#[inline]
pub(super) fn layer1(m: &Mlp, k: Kernel, x: &Inputs) -> [f32; H1] {
    dispatch!(k, layer1(m, x))
}

#[inline]
pub(super) fn layer2(m: &Mlp, k: Kernel, h1: &[f32; H1]) -> [f32; H2] {
    dispatch!(k, layer2(m, h1))
}

#[inline]
pub(super) fn output(m: &Mlp, k: Kernel, h2: &[f32; H2]) -> f32 {
    dispatch!(k, output(m, h2))
}

/// Calls per kernel since start, so tests can prove a SIMD path really ran.
#[cfg(test)]
pub(crate) mod calls {
    use core::sync::atomic::{AtomicUsize, Ordering};
    #[cfg(target_arch = "x86_64")]
    pub(crate) static AVX2: AtomicUsize = AtomicUsize::new(0);
    #[cfg(target_arch = "x86_64")]
    pub(crate) static AVX512: AtomicUsize = AtomicUsize::new(0);
    #[cfg(target_arch = "aarch64")]
    pub(crate) static NEON: AtomicUsize = AtomicUsize::new(0);
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub(crate) fn bump(c: &AtomicUsize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
