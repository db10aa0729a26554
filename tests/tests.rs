//! Integration tests on real sockets: one binary, topic modules (ripgrep style).

mod util;

mod allocator;
mod attacks;
mod balancing;
mod browser;
mod cli;
mod config_file;
mod dataplane;
mod fleet;
mod forecast;
mod forwarding;
mod fuzz_corpus;
mod historian;
mod hostile;
mod hypervisor;
mod layout;
mod lifecycle;
mod limits;
mod observability;
mod packaging;
mod protocols;
mod routing;
