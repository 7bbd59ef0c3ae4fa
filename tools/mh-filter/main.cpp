// mh-filter: pass the messages for which an expression holds, reshape them, raise alerts,
// sample and deduplicate. The work is in lib/filter.
#include "filter/filter.h"

int main(int argc, char** argv) {
    mh::filter::FilterOptions options;
    auto& rules = options.rules;
    CLI::App app{
        "Pass the messages for which EXPR holds; compute, rename, drop and keep fields; "
        "raise alert messages on boundary checks; sample and deduplicate by id. "
        "See man mh-filter for the expression language.",
        "mh-filter"};
    mh::cli::add_common_options(app, options.common, mh::cli::Streams::in_and_out);
    app.add_option(
        "EXPR", rules.expression,
        "Pass the messages for which this holds, e.g. 'temperature > 30 and humidity < 50' "
        "(default: every message)");
    app.add_flag("-v,--invert", rules.invert, "Pass the messages for which EXPR does not hold");
    app.add_option(
        "--rejects", options.rejects,
        "Where the messages that fail EXPR go (an output spec); otherwise they are dropped");
    app.add_option("--set", rules.sets,
                   "NAME=EXPR, repeatable, in order: a computed field, e.g. "
                   "'temperature_f=temperature * 9 / 5 + 32'")
        ->allow_extra_args(false);
    app.add_option("--rename", rules.renames, "OLD=NEW, repeatable or a comma list: rename fields")
        ->delimiter(',')
        ->allow_extra_args(false);
    app.add_option("--drop", rules.drop, "Fields to leave out (comma list, names after --rename)")
        ->delimiter(',')
        ->allow_extra_args(false);
    app.add_option("--keep", rules.keep,
                   "Only these fields are kept (comma list, names after --rename)")
        ->delimiter(',')
        ->allow_extra_args(false);
    app.add_option("--kind", rules.kind, "Set the kind of the passing messages");
    app.add_option(
           "--alert", rules.alerts,
           "[NAME=]EXPR, repeatable: every passing message for which EXPR holds raises an alert "
           "message, e.g. 'too_hot=temperature > 30'")
        ->allow_extra_args(false);
    app.add_option(
        "--alert-out", options.alert_out,
        "Where alerts go (an output spec); otherwise into the data stream after their message");
    app.add_option(
           "--sample", rules.sample,
           "Keep this share of the messages (0 < RATE <= 1), chosen by a hash of the id, so "
           "that a replay keeps the same ones")
        ->capture_default_str();
    app.add_option("--dedup", rules.dedup,
                   "Drop a message whose id was seen within this window of id time (10m, 1h)");
    auto* dedup_max = app.add_option("--dedup-max", rules.dedup_max,
                                     "At most this many ids remembered by --dedup (32 bytes each)")
                          ->capture_default_str()
                          ->check(CLI::Range(uint64_t{1}, mh::filter::k_max_dedup_entries));
    dedup_max->needs(app.get_option("--dedup"));
    return mh::cli::run_main(app, options.common, argc, argv, [&](mh::cli::ToolContext& context) {
        return mh::filter::run(options, context);
    });
}
