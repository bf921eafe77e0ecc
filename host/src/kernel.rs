//! Picking the forward kernel: detect the CPU once, honour `--kernel`.
//!
//! The core cannot ask the CPU what it supports (that needs std), so this is
//! the one place that does, and the only place that builds a
//! `CpuFeatures` from run-time facts. The choice is logged at start-up and
//! shown in `/health` and `cm_kernel_info`.

use anyhow::{anyhow, Result};
use cm_core::kernels::{CpuFeatures, Kernel};

/// `--kernel` value that means "the fastest this CPU runs".
pub const AUTO: &str = "auto";

/// The features this CPU has, detected at run time.
pub fn detect() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let avx512 = std::is_x86_feature_detected!("avx512f");
        // SAFETY: both flags come straight from the CPUID-based detection
        // macros for exactly the features new_unchecked names.
        unsafe { CpuFeatures::new_unchecked(avx2, avx512, false) }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let neon = std::arch::is_aarch64_feature_detected!("neon");
        // SAFETY: the flag comes from the run-time detection macro.
        unsafe { CpuFeatures::new_unchecked(false, false, neon) }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        CpuFeatures::NONE
    }
}

/// The kernel for a `--kernel` value (`auto` or a name), refused with a clear
/// error when this CPU cannot run it.
pub fn select(choice: &str) -> Result<Kernel> {
    let cpu = detect();
    let c = choice.trim().to_ascii_lowercase();
    if c == AUTO {
        return Ok(Kernel::best(cpu));
    }
    Kernel::from_name(&c, cpu).map_err(|e| anyhow!("--kernel {choice}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_and_auto_always_work() {
        assert_eq!(select("scalar").unwrap().name(), "scalar");
        assert!(select("auto").is_ok());
        assert!(select("sse9").is_err());
    }

    /// Every kernel name either runs here, because this CPU has its
    /// features, or is refused with a message naming the flag and the lack.
    #[test]
    fn a_kernel_this_cpu_lacks_is_refused_by_name() {
        let cpu = detect();
        for name in ["avx2", "avx512", "neon"] {
            let best_has_it = Kernel::from_name(name, cpu).is_ok();
            match select(name) {
                Ok(k) => {
                    assert!(best_has_it);
                    assert_eq!(k.name(), name);
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(&format!("--kernel {name}: ")), "{msg}");
                    assert!(
                        msg.contains("lacks") || msg.contains("architecture"),
                        "{msg}"
                    );
                }
            }
        }
        // Case and spaces are forgiven; the error quotes what was typed.
        assert_eq!(select(" Scalar ").unwrap().name(), "scalar");
        let e = select("AVX9").unwrap_err().to_string();
        assert!(e.starts_with("--kernel AVX9: "), "{e}");
    }

    #[test]
    fn auto_picks_what_the_cpu_has() {
        let k = select("auto").unwrap();
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            assert_ne!(k.name(), "scalar");
        }
        let _ = k;
    }
}
