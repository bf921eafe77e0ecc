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
