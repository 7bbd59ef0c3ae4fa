// mh-stream: pull data in from other systems' endpoints (an MQTT broker, a JSON API, a followed file) and turn it
// into messages. The work is in lib/stream and lib/ingest.
#include "stream/stream_tool.h"

int main(int argc, char** argv) {
    using namespace mh;
    cli::CommonOptions common;  // filled by whichever subcommand runs
    stream::MqttCommand mqtt;
    stream::HttpCommand http;
    stream::FileCommand file;

    CLI::App app{"Pull data in from other systems' endpoints and turn each record into a message", "mh-stream"};
    app.set_version_flag("--version", cli::version_text("mh-stream"));
    app.require_subcommand(1);

    auto* mqtt_app = app.add_subcommand("mqtt", "Subscribe to topics on an MQTT broker; each payload is a JSON object");
    cli::add_common_options(*mqtt_app, common, cli::Streams::out_only);
    mqtt_app->remove_option(mqtt_app->get_option("--dead-letter"));
    stream::add_mqtt_options(*mqtt_app, mqtt);

    auto* http_app = app.add_subcommand("http", "Poll a JSON API: conditional requests, records at a path, overlap dropped");
    cli::add_common_options(*http_app, common, cli::Streams::out_only);
    http_app->remove_option(http_app->get_option("--dead-letter"));
    stream::add_http_options(*http_app, http);

    auto* file_app = app.add_subcommand("file", "Follow a file of JSON lines or CSV like tail -F, keeping the read position");
    cli::add_common_options(*file_app, common, cli::Streams::out_only);
    file_app->remove_option(file_app->get_option("--dead-letter"));
    stream::add_file_options(*file_app, file);

    app.footer([&app] { return cli::all_subcommands_help(app); });

    return cli::run_main(app, common, argc, argv, [&](cli::ToolContext& context) {
        if (*http_app) return stream::run_http(http, context);
        if (*file_app) return stream::run_file(file, context);
        return stream::run_mqtt(mqtt, context);
    });
}
