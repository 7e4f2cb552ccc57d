// mimalloc: config loading is allocation-heavy (syntax trees, values, strings), and the
// system allocator cost a noticeable share of `image validate` (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(convirt::crash::run(convirt::cli::main));
}
