//! The request path of a synapse route, body bytes to answer bytes, in one
//! call: [`serve`] parses the body (once, by the one parser), predicts, and
//! writes the whole success body into the caller's buffer.
//!
//! The host calls exactly this function for `/ConversionSynapse` and the
//! ping `/Synapse`, and so do the `predict/full` bench and the allocation
//! test: what they time and count is what the server runs. It is generic
//! over nothing the host owns: the model, the kernel and the learned key
//! order are passed in, and so is the clock (the core has none), read once
//! the answer is known and before it is written, since the answer carries
//! its own `response_time`.

use crate::kernels::Kernel;
use crate::model::{Model, Prediction};
use crate::parse::{parse_body, Features, KeyOrder, ParseError};
use crate::respond::{max_synapse_len, write_synapse, AxonId, BufferTooSmall, Filled};

/// Class name of the subnet's synapse (its route is `/ConversionSynapse`).
pub const CONVERSION_SYNAPSE: &str = "ConversionSynapse";
/// Class name of bittensor's base synapse, which a ping sends (`/Synapse`).
pub const PING_SYNAPSE: &str = "Synapse";

/// The two synapse routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A prediction request.
    Conversion,
    /// A ping: the body is echoed with the axon status, no prediction.
    Ping,
}

impl Route {
    /// The synapse class name the answer's `name` is set to.
    pub const fn name(self) -> &'static str {
        match self {
            Route::Conversion => CONVERSION_SYNAPSE,
            Route::Ping => PING_SYNAPSE,
        }
    }
}

/// A request answered: `out[..len]` holds the body.
#[derive(Clone, Copy, Debug)]
pub struct Served<'a> {
    /// Bytes written to the caller's buffer.
    pub len: usize,
    /// The conversation (conversion route only).
    pub features: Option<Features<'a>>,
    /// The model's answer (conversion route only).
    pub prediction: Option<Prediction>,
    /// The clock's reading written as `response_time` and `process_time`.
    pub seconds: f64,
}

/// Why a request got no success body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The body (its JSON, or its features) is refused.
    Parse(ParseError),
    /// The caller's buffer is shorter than [`crate::respond::max_synapse_len`].
    Buffer(BufferTooSmall),
}

impl From<ParseError> for Refused {
    fn from(e: ParseError) -> Self {
        Refused::Parse(e)
    }
}

impl From<BufferTooSmall> for Refused {
    fn from(e: BufferTooSmall) -> Self {
        Refused::Buffer(e)
    }
}

/// Everything [`serve`] needs besides the body and the buffer.
#[derive(Clone, Copy)]
pub struct Server<'m> {
    pub model: &'m Model,
    pub kernel: Kernel,
    pub me: AxonId<'m>,
}

/// A buffer size [`serve`] never overruns for a body of `body_len` bytes.
pub fn capacity(body_len: usize, route: Route, s: &Server<'_>) -> usize {
    let f = Filled {
        name: route.name(),
        prediction: None,
        seconds: 0.0,
        me: s.me,
    };
    max_synapse_len(body_len, &f)
}

/// Answer one synapse request: parse `body`, predict (conversion route),
/// read `clock` (seconds of our own work so far), and write the success
/// body into `out`. Never allocates and never panics.
pub fn serve<'a>(
    body: &'a [u8],
    route: Route,
    s: &Server<'_>,
    order: &mut KeyOrder,
    clock: impl FnOnce() -> f64,
    out: &mut [u8],
) -> Result<Served<'a>, Refused> {
    let parsed = parse_body(body, order)?;
    let (features, prediction) = match route {
        Route::Conversion => {
            let f = parsed.features()?;
            let p = s.model.predict(&f, s.kernel);
            (Some(f), Some(p))
        }
        Route::Ping => (None, None),
    };
    let seconds = clock();
    let filled = Filled {
        name: route.name(),
        prediction: prediction.as_ref(),
        seconds,
        me: s.me,
    };
    let len = write_synapse(body, &parsed.layout, &filled, out)?;
    Ok(Served {
        len,
        features,
        prediction,
        seconds,
    })
}
