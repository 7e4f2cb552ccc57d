fn main() {
    std::process::exit(convirt::cli::main());
}
