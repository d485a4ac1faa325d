//! What the fan-out tests share.

/// The async runtime the publisher and the stream readers run on, as the binary builds it: one
/// worker thread beside the test's own.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}
