//! Media processing, pure of I/O services: it reads local files and writes
//! local files, and knows nothing of HTTP, databases or object stores.

pub mod av;
pub mod image_render;
pub mod sniff;
