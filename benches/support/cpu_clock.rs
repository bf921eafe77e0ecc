//! A criterion measurement that reads the bench thread's CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`) instead of the wall clock.
//!
//! The development machine has 2 cores shared by several builds at once
//! (load average 9 while these benches were written): wall-clock samples
//! then include the time the bench thread spent waiting for a core, and
//! medians came out 2-3x slower than the work. The thread's CPU time counts
//! only the time it ran. On an idle machine the two agree; set
//! `CM_BENCH_CLOCK=wall` to get the wall clock anyway.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// Thread CPU time (or wall time, see the module docs), in nanoseconds.
pub struct CpuClock {
    clock: libc::clockid_t,
}

impl CpuClock {
    pub fn from_env() -> Self {
        let wall = std::env::var("CM_BENCH_CLOCK").is_ok_and(|v| v == "wall");
        let clock = if wall {
            libc::CLOCK_MONOTONIC
        } else {
            libc::CLOCK_THREAD_CPUTIME_ID
        };
        eprintln!(
            "bench clock: {}",
            if wall {
                "wall (CLOCK_MONOTONIC)"
            } else {
                "thread CPU time (CLOCK_THREAD_CPUTIME_ID)"
            }
        );
        CpuClock { clock }
    }

    pub fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; both clock ids exist
        // on every Linux this bench runs on.
        let rc = unsafe { libc::clock_gettime(self.clock, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime failed");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

impl Measurement for CpuClock {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds like criterion's own wall-time formatter.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // values are ns per iteration; turn them into elements (or bytes) per second.
        let (per_iter, unit_k, unit_m, unit_g, unit) = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                (n as f64, "KB/s", "MB/s", "GB/s", "B/s")
            }
            Throughput::Elements(n) => (n as f64, "Kelem/s", "Melem/s", "Gelem/s", "elem/s"),
        };
        let rates: Vec<f64> = values.iter().map(|ns| per_iter * 1e9 / ns).collect();
        let typical = rates.iter().cloned().fold(0.0, f64::max);
        let (factor, u) = if typical >= 1e9 {
            (1e-9, unit_g)
        } else if typical >= 1e6 {
            (1e-6, unit_m)
        } else if typical >= 1e3 {
            (1e-3, unit_k)
        } else {
            (1.0, unit)
        };
        for (v, r) in values.iter_mut().zip(rates) {
            *v = r * factor;
        }
        u
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
