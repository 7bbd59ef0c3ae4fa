// mh-cat: frames <-> JSON lines / CSV / text, and relay or tap of any endpoint.
#include "cat/cat.h"

int main(int argc, char** argv) {
    mh::cat::CatOptions options;
    CLI::App app{"Convert JSON lines or CSV to mh frames and back, or relay and tap frames "
                 "between stdin/stdout, files and ZeroMQ endpoints.",
                 "mh-cat"};
    mh::cli::add_common_options(app, options.common, mh::cli::Streams::in_and_out);
    app.add_option("-f,--from", options.from, "Input format")
        ->capture_default_str()
        ->check(CLI::IsMember({"frames", "json", "csv"}));
    app.add_option("-t,--to", options.to, "Output format (text: one readable line per message)")
        ->capture_default_str()
        ->check(CLI::IsMember({"frames", "json", "csv", "text"}));
    app.add_flag("--strict", options.strict, "Stop at the first bad JSON line or CSV row (exit 65) "
                                             "instead of reporting and skipping it");
    app.add_option("--time", options.time_format, "How json and csv output write times")
        ->capture_default_str()
        ->check(CLI::IsMember({"ns", "rfc3339"}));
    app.add_option("--columns", options.columns, "CSV output columns (default: the first message's)")
        ->delimiter(',');
    app.add_option("-n,--count", options.count, "Stop after this many messages (0: no limit)")
        ->capture_default_str()
        ->check(mh::cli::unsigned_number());
    return mh::cli::run_main(app, options.common, argc, argv,
                             [&](mh::cli::ToolContext& context) { return mh::cat::run(options, context); });
}
