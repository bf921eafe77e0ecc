//! The core's request path makes no heap allocation: `cm_core::serve::serve`
//! (parse -> predict -> write the whole success body), the function the
//! server calls, run over 1,000 generated dendrite-shaped bodies on every
//! kernel this CPU has, under a global allocator that counts.
//!
//! Its own test binary, because the counting allocator is global. The count
//! is per thread (the test harness's other threads may allocate freely),
//! and only while the flag is up; a control allocation under the flag shows
//! the counter sees allocations at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cm_core::parse::KeyOrder;
use cm_core::respond::AxonId;
use cm_core::serve::{capacity, serve, Route, Server};

#[path = "../benches/support/mod.rs"]
mod support;

/// Generated request bodies the path is run over.
const N_BODIES: usize = 1000;

thread_local! {
    /// Whether this thread's allocations are being counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations (and reallocations) this thread made while counting.
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting this thread's calls while asked to.
struct Counting;

fn note() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are this allocator's; the counting
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn parse_predict_respond_makes_no_heap_allocation() {
    // Everything the path reads is made before counting starts.
    let model = conversion_miner::embedded::model();
    let bodies = support::request_bodies(2027, N_BODIES);
    let kernels = support::kernels();
    let me = AxonId {
        hotkey: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
        ip: "127.0.0.1",
        port: 8091,
    };
    let longest = bodies.iter().map(Vec::len).max().unwrap_or(0);

    // The counter sees an allocation when there is one.
    let control = allocations(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(control, 1, "the counting allocator does not count");

    for &kernel in &kernels {
        let server = Server { model, kernel, me };
        let mut out = vec![0u8; capacity(longest, Route::Conversion, &server)];
        let mut order = KeyOrder::new();
        let mut positives = 0usize;
        let mut written = 0usize;
        let count = allocations(|| {
            for body in &bodies {
                let t = std::time::Instant::now();
                let served = serve(
                    body,
                    Route::Conversion,
                    &server,
                    &mut order,
                    || t.elapsed().as_secs_f64(),
                    &mut out,
                )
                .expect("a generated body is served");
                let p = served.prediction.expect("the conversion route predicts");
                positives += usize::from(p.conversion_happened == 1);
                written += served.len;
                // The ping route shares the writer.
                let ping = serve(body, Route::Ping, &server, &mut order, || 0.0, &mut out)
                    .expect("a ping is served");
                written += ping.len;
            }
        });
        assert_eq!(
            count,
            0,
            "{count} allocations over {N_BODIES} bodies on {}",
            kernel.name()
        );
        // The path did real work: both classes, every body written.
        assert!(positives > 0 && positives < N_BODIES, "{positives}");
        assert!(written > 2 * N_BODIES * 1000, "{written} bytes");
    }
}
