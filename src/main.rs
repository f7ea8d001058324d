use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = till::cli::Cli::parse();
    match till::cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("till: {e:#}");
            std::process::exit(2);
        }
    }
}
