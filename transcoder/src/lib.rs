//! Media processing, pure of I/O services: it reads local files and writes
//! local files, and knows nothing of HTTP, databases or object stores.

pub mod sniff;
