//! The `kafka-influx-sink` command: run the sink, check a configuration, simulate generators.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_influx_sink::config::Config;
use kafka_influx_sink::secret::Secret;
use kafka_influx_sink::simulate::{
    Format, FormatOptions, KeyMode, Limit, RegistrySettings, SimulateOptions,
};
use tokio_util::sync::CancellationToken;

/// The allocator of Rust's allocations; with mimalloc's `override` feature the binary's
/// `malloc` and `free` are mimalloc's as well, so librdkafka's per-message allocations (an
/// op, a header parse buffer) take the same fast path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, before any thread starts. Where the
/// kernel uses them (`always`, or `madvise`, which mimalloc asks for), every page the allocator
/// takes afresh is a 2 MiB one zeroed at once: librdkafka allocates each message's op on its
/// broker thread and the record loop frees it, and each batch's buffers come and go, so the
/// sink faulted in and zeroed huge pages all the time (about a tenth of its CPU while draining
/// a backlog, and 20-40 MiB more resident memory). Failing (a kernel before 3.15) costs only
/// that speed.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// How long mimalloc keeps memory freed before it gives it back to the kernel (mimalloc's
/// default: one second). Paced by InfluxDB, the sink works in bursts: librdkafka's fetch
/// buffers and each batch's buffers are freed and allocated again a moment later, and every page
/// given back in between is faulted in and zeroed afresh. With ten seconds a 2M-record drain at
/// InfluxDB's pace took 35,000 page faults instead of 75,000 (README, Performance); memory left
/// after a backlog still goes back within seconds. `MIMALLOC_PURGE_DELAY` in the environment
/// overrides it.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// mimalloc's `mi_option_purge_delay`, which `libmimalloc-sys` does not name: the option just
/// before `mi_option_use_numa_nodes` in `mimalloc.h`'s `mi_option_e` (a test checks it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

fn keep_freed_memory_longer() {
    // SAFETY: sets a plain integer option; mimalloc reads it when it next purges.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS)
    };
}

/// Kafka → InfluxDB sink that never loses a record: schema-validated records become line
/// protocol, offsets are committed only after InfluxDB acknowledged the write, and records that
/// cannot be written go to a dead-letter topic with the reason.
#[derive(Debug, Parser)]
#[command(name = "kafka-influx-sink", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sink until SIGTERM or SIGINT (a second signal exits at once).
    ///
    /// Consumes the configured topics in the configured consumer group, validates and maps each
    /// record, writes batches to InfluxDB, dead-letters rejected records, and commits offsets
    /// only once everything before them is durable.
    Run(ConfigArg),
    /// Validate a configuration and print the effective settings, secrets redacted.
    ///
    /// Applies `KIS_<SECTION>__<KEY>` environment overrides and reads secret files exactly as
    /// `run` would. Exits with status 2 and names the key on any problem.
    CheckConfig(ConfigArg),
    /// Produce simulated emergency-generator telemetry to Kafka.
    ///
    /// Uses the `[kafka]` brokers (and properties) of the configuration. Prints a JSON summary
    /// (`valid`, `invalid`, `failed`) on standard output when done.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file (TOML); see config/reference.toml for every key.
    #[arg(long, short, env = "KIS_CONFIG")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Topic to produce to [default: the first of kafka.topics].
    #[arg(long)]
    topic: Option<String>,
    /// Number of generators.
    #[arg(long, default_value_t = 10)]
    generators: usize,
    /// Records per second across all generators (0 = as fast as possible).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop after this many records.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Record key: the generator id, or a fresh UUID per record (as the original producer).
    #[arg(long, value_enum, default_value_t = KeyArg::Uuid)]
    key: KeyArg,
    /// Share of records (0.0-1.0) made invalid on purpose. JSON formats: broken JSON, missing
    /// or mistyped fields, NaN, empty generator ids; json-sr adds a wrong magic byte, an
    /// unregistered schema id and a truncated frame. Avro formats: truncated datums, garbage
    /// bytes, JSON text on an Avro topic (avro), a wrong magic byte, an unregistered schema id
    /// and a truncated frame (avro-sr), empty generator ids. An encoded Avro record cannot
    /// violate its schema, so Avro faults are undecodable bytes or bad frames.
    #[arg(long, default_value_t = 0.0)]
    invalid_ratio: f64,
    /// Seed for positions, readings and the choice of invalid records.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Wire format of the values: json (plain JSON text), json-sr (Confluent framing: 0x00, the
    /// 4-byte big-endian schema id, JSON), avro-sr (Confluent framing, Avro binary) or avro
    /// (Avro binary, no framing). The -sr formats register the schema under <topic>-value.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,
    /// Schema Registry base URL, required by json-sr and avro-sr. Credentials may be given as
    /// user info (https://user:password@host); they are never printed.
    #[arg(long, value_name = "URL", required_if_eq_any = [("format", "json-sr"), ("format", "avro-sr")])]
    registry_url: Option<String>,
    /// Schema Registry credentials as user:password (Confluent Cloud: API key and secret).
    #[arg(long, value_name = "USER:PASSWORD", env = "KIS_REGISTRY_BASIC_AUTH", hide_env_values = true, value_parser = parse_secret)]
    registry_basic_auth: Option<Secret>,
    /// Schema file replacing the built-in one: a JSON Schema for json-sr
    /// (default schemas/generator.schema.json), an Avro schema for avro-sr and avro
    /// (default schemas/generator.avsc).
    #[arg(long, value_name = "FILE")]
    schema_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyArg {
    Generator,
    Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Json,
    JsonSr,
    AvroSr,
    Avro,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Json => Format::Json,
            FormatArg::JsonSr => Format::JsonSr,
            FormatArg::AvroSr => Format::AvroSr,
            FormatArg::Avro => Format::Avro,
        }
    }
}

/// Wraps the value at once, so that not even `Debug` of the arguments shows it.
fn parse_secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

/// Longest the exit waits for the async runtime's leftover tasks and threads.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    without_transparent_huge_pages();
    keep_freed_memory_longer();
    let cli = Cli::parse();
    let config_path = match &cli.command {
        Command::Run(args) | Command::CheckConfig(args) => &args.config,
        Command::Simulate(args) => &args.config.config,
    };
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig(_) = cli.command {
        print!("{}", config.effective_toml());
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        eprintln!("configuration OK: {}", config_path.display());
        return ExitCode::SUCCESS;
    }
    kafka_influx_sink::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(handle_signals(shutdown.clone()));
        match cli.command {
            Command::Run(_) => kafka_influx_sink::run(config, shutdown)
                .await
                .map(|_| ())
                .context("sink failed"),
            Command::Simulate(args) => simulate(&config, args, shutdown).await,
            Command::CheckConfig(_) => Ok(()),
        }
    });
    // Tasks and blocking threads still running (a DNS lookup, a client closing past its
    // deadline) do not delay the exit: nothing durable depends on them any more.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "exiting");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn simulate(
    config: &Config,
    args: SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.invalid_ratio),
        "--invalid-ratio must be between 0 and 1"
    );
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be 0 or more"
    );
    anyhow::ensure!(args.generators >= 1, "--generators must be at least 1");
    let limit = match (args.count, args.duration) {
        (Some(count), _) => Limit::Count(count),
        (None, Some(seconds)) => {
            anyhow::ensure!(
                seconds.is_finite() && seconds > 0.0,
                "--duration must be positive"
            );
            Limit::Duration(Duration::from_secs_f64(seconds))
        }
        (None, None) => Limit::Unbounded,
    };
    let topic = match args.topic {
        Some(topic) => topic,
        None => config
            .kafka
            .topics
            .first()
            .cloned()
            .context("kafka.topics is empty")?,
    };
    let format = Format::from(args.format);
    anyhow::ensure!(
        format.uses_registry()
            || (args.registry_url.is_none() && args.registry_basic_auth.is_none()),
        "--registry-url and --registry-basic-auth are only used by --format json-sr and avro-sr"
    );
    anyhow::ensure!(
        format != Format::Json || args.schema_file.is_none(),
        "--schema-file is only used by --format json-sr, avro-sr and avro"
    );
    let registry = match &args.registry_url {
        Some(url) => Some(RegistrySettings::new(
            url,
            args.registry_basic_auth.as_ref(),
        )?),
        None => None,
    };
    let options = SimulateOptions {
        topic,
        generators: args.generators,
        rate: args.rate,
        limit,
        key: match args.key {
            KeyArg::Generator => KeyMode::Generator,
            KeyArg::Uuid => KeyMode::Uuid,
        },
        invalid_ratio: args.invalid_ratio,
        seed: args.seed,
        format: FormatOptions {
            format,
            schema_file: args.schema_file,
            registry,
        },
    };
    let summary = kafka_influx_sink::simulate::simulate(&config.kafka, &options, shutdown)
        .await
        .context("simulation failed")?;
    println!("{}", serde_json::to_string(&summary)?);
    anyhow::ensure!(
        summary.failed == 0,
        "{} records were not acknowledged by Kafka",
        summary.failed
    );
    Ok(())
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once.
async fn handle_signals(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            tracing::info!("shutdown requested; a second signal exits immediately");
            shutdown.cancel();
        } else {
            tracing::warn!(
                "second signal: exiting without waiting; uncommitted records are re-read on restart"
            );
            std::process::exit(130);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets plain integer options.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // mimalloc 3's default for `purge_delay`, and no other option's: a wrong index shows.
        assert_eq!(before, 1000, "not mimalloc's purge_delay option");
        keep_freed_memory_longer();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, ALLOCATOR_PURGE_DELAY_MS);
    }
}
