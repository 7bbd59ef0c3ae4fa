#include "cat/cat.h"

#include "csv/csv_codec.h"
#include "json/json_codec.h"
#include "relay/pump.h"
#include "text/text_sink.h"

namespace mh::cat {
namespace {

std::unique_ptr<wire::FrameSource> open_source(const CatOptions& options, cli::ToolContext& context) {
    const std::string& spec = context.options().in;
    auto strict = options.strict ? Strict::yes : Strict::no;
    if (options.from == "json")
        return std::make_unique<JsonLineSource>(context.open_input_fd(spec), &context.stop(),
                                                      context.log(), strict, context.limits());
    if (options.from == "csv")
        return std::make_unique<CsvSource>(context.open_input_fd(spec), &context.stop(),
                                                context.log(), strict, context.limits());
    return context.open_frame_source(spec);
}

std::unique_ptr<wire::FrameSink> open_sink(const CatOptions& options, const std::string& spec,
                                           cli::ToolContext& context) {
    auto time_format = options.time_format == "rfc3339" ? TimeFormat::rfc3339
                                                         : TimeFormat::nanoseconds;
    if (options.to == "json")
        return std::make_unique<JsonSink>(context.open_output_fd(spec), time_format, context.limits());
    if (options.to == "csv")
        return std::make_unique<CsvSink>(context.open_output_fd(spec), options.columns, time_format,
                                              context.limits());
    if (options.to == "text")
        return std::make_unique<TextSink>(context.open_output_fd(spec), context.limits());
    return context.open_frame_sink(spec);
}

}  // namespace

int run(const CatOptions& options, cli::ToolContext& context) {
    auto source = open_source(options, context);

    std::vector<std::string> outputs = context.options().out;
    if (outputs.empty()) outputs.push_back("-");
    std::vector<std::unique_ptr<wire::FrameSink>> sinks;
    std::vector<wire::FrameSink*> sink_pointers;
    for (const auto& spec : outputs) {
        sinks.push_back(open_sink(options, spec, context));
        sink_pointers.push_back(sinks.back().get());
    }
    std::unique_ptr<wire::FrameSink> dead_letter;
    if (!context.options().dead_letter.empty())
        dead_letter = context.open_frame_sink(context.options().dead_letter);

    relay::FlowCounters counters(context.metrics());
    relay::PumpOptions pump_options;
    pump_options.max_messages = options.count;
    // Frames we decoded from text ourselves are well formed; frames from outside are checked.
    pump_options.check = options.from == "frames" ? relay::Check::full : relay::Check::framing_only;
    pump_options.limits = context.limits();
    pump_options.dead_letter = dead_letter.get();

    auto result = relay::pump(*source, sink_pointers, counters, pump_options, context.log());
    if (context.stop().load())
        context.log().info("stopped after {} messages", result.messages);
    if (uint64_t rejected = source->rejected())
        context.log().warn("skipped {} bad input {}", rejected, options.from == "frames" ? "batches" : "lines");
    return 0;
}

}  // namespace mh::cat
