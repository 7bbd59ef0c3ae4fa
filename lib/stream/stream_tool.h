// mh-stream's subcommands: pull data in from other systems' endpoints and turn it into
// messages on --out. Every source maps records with ingest::Mapper, so a JSON object means
// the same to mh-stream as to mh-cat, and the field mapping options are shared.
//   mqtt  subscribe to topic filters on a broker (TLS, login or client certificate)
//   http  poll a JSON API with conditional requests, records at a path, overlap dropped
//   file  follow a file of JSON lines or CSV like tail -F, keeping the read position
#pragma once

#include "cli/tool.h"
#include "ingest/mapping.h"
#include "stream/file_source.h"
#include "stream/http_source.h"
#include "stream/mqtt_source.h"

#include <string>

namespace mh::stream {

struct MappingArgs {
    ingest::MappingOptions mapping;
    std::string time_unit = "auto";
};

struct MqttCommand {
    MqttOptions mqtt;
    MappingArgs mapping;
};

struct HttpCommand {
    HttpOptions http;
    std::string interval = "30s";
    std::string timeout = "30s";
    MappingArgs mapping;
};

struct FileCommand {
    FileOptions file;
    std::string poll = "200ms";
    MappingArgs mapping;
};

// The options of each subcommand, on its CLI11 app (main() stays a list of calls).
void add_mapping_options(CLI::App& app, MappingArgs& args);
void add_mqtt_options(CLI::App& app, MqttCommand& command);
void add_http_options(CLI::App& app, HttpCommand& command);
void add_file_options(CLI::App& app, FileCommand& command);

int run_mqtt(const MqttCommand& command, cli::ToolContext& context);
int run_http(const HttpCommand& command, cli::ToolContext& context);
int run_file(const FileCommand& command, cli::ToolContext& context);

}  // namespace mh::stream
