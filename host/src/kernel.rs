//! `--kernel`: the CLI's spelling of a kernel choice, and its error message.
//!
//! What the CPU can run is the core's answer (`CpuFeatures::detect`, with
//! cm-core's `std` feature); this file only maps the flag's value (`auto`,
//! or a kernel name, case and surrounding spaces forgiven) onto it. The
//! choice is logged at start-up and shown in `/health` and `cm_kernel_info`.

use anyhow::{anyhow, Result};
use cm_core::kernels::{CpuFeatures, Kernel};

/// `--kernel` value that means "the fastest this CPU runs".
pub const AUTO: &str = "auto";

/// The kernel for a `--kernel` value (`auto` or a name), refused with a clear
/// error when this CPU cannot run it.
pub fn select(choice: &str) -> Result<Kernel> {
    let cpu = CpuFeatures::detect();
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

    /// Every kernel name (and old alias) either runs here, because this CPU
    /// has its features, or is refused with a message naming the flag and
    /// the lack.
    #[test]
    fn a_kernel_this_cpu_lacks_is_refused_by_name() {
        let cpu = CpuFeatures::detect();
        for name in ["avx2-fma-f16c", "avx512f", "neon", "avx2", "avx512"] {
            let runs_here = Kernel::from_name(name, cpu).is_ok();
            match select(name) {
                Ok(k) => {
                    assert!(runs_here);
                    assert!(k.name().starts_with(name), "{name} gave {}", k.name());
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!runs_here);
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
