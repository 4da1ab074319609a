//! Media processing, pure of I/O services: it reads local files and writes
//! local files, and knows nothing of HTTP, databases or object stores.
//!
//! Without features the crate is the part the service needs: sniffing, the
//! presets and the render protocol. The `decoders` feature adds the decoders
//! and encoders (FFmpeg, libjpeg-turbo, libwebp, `image`) and the work
//! itself; only the `media-render` child (and the benchmarks) enable it, so
//! the serving binary never links a decoder.

pub mod preset;
pub mod render;
pub mod sniff;
pub mod strip;

#[cfg(feature = "decoders")]
pub mod av;
#[cfg(feature = "decoders")]
pub mod image_render;
