// Frames from polling a JSON API over HTTP(S) with libcurl (Debian's, with OpenSSL), not a
// client of our own. Each poll is a conditional request (If-None-Match with the last ETag,
// If-Modified-Since with the last Last-Modified), so an unchanged resource costs a 304 and
// no parsing. The records are found at a dotted path inside the response ("data.items"), and
// a record already seen in the previous poll (by --key, else by a hash of its JSON) is dropped:
// APIs that return "the latest N" overlap from one poll to the next.
#pragma once

#include "core/log.h"
#include "core/stop.h"
#include "ingest/mapping.h"
#include "ingest/records.h"
#include "metrics/metrics.h"
#include "wire/stream.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_set>
#include <vector>

struct curl_slist;

namespace mh::stream {

constexpr size_t k_default_max_response_bytes = 64 << 20;

struct HttpOptions {
    std::string url;
    std::chrono::milliseconds interval = std::chrono::seconds(30);
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    std::string records;               // dotted path to the records; empty: the whole response
    std::string key;                   // dotted path to a record's identity; empty: a hash of it
    std::vector<std::string> headers;  // "Name: value", sent with every request
    std::string cafile;                // CA certificates for https (default: the system's)
    size_t max_response_bytes = k_default_max_response_bytes;
};

class HttpSource final : public wire::FrameSource {
public:
    HttpSource(const HttpOptions& options, const ingest::MappingOptions& mapping, const StopFlag* stop, Log& log,
               metrics::Registry& metrics, wire::FrameLimits limits);
    ~HttpSource() override;
    HttpSource(const HttpSource&) = delete;
    HttpSource& operator=(const HttpSource&) = delete;

    wire::Next next(wire::Wait wait, wire::Frame& frame) override;
    uint64_t rejected() const override { return m_rejected; }

    uint64_t polls() const { return m_polls; }
    uint64_t duplicates() const { return m_duplicates; }

    // For libcurl's callbacks.
    bool append_body(const char* data, size_t size);
    void header_line(std::string_view line);
    bool stop_requested() const { return m_stop && m_stop->load(); }

private:
    void poll();

    HttpOptions m_options;
    const StopFlag* m_stop;
    Log& m_log;
    wire::FrameLimits m_limits;
    ingest::Mapper m_mapper;
    ingest::RecordExtractor m_extractor;
    void* m_curl = nullptr;
    curl_slist* m_header_list = nullptr;

    std::string m_body;
    bool m_body_too_large = false;
    std::string m_etag, m_last_modified;              // of the last 2xx response
    std::string m_response_etag, m_response_modified;  // of the response being read
    std::unordered_set<std::string> m_previous, m_current;  // identities of the records per poll
    std::vector<ingest::Record> m_records;
    std::chrono::steady_clock::time_point m_next_poll{};
    uint64_t m_polls = 0, m_failures = 0;

    std::deque<std::vector<std::byte>> m_ready;
    std::vector<std::byte> m_frame;
    uint64_t m_rejected = 0, m_duplicates = 0;

    metrics::Counter& m_changed;
    metrics::Counter& m_not_modified;
    metrics::Counter& m_failed;
    metrics::Counter& m_dropped_duplicate;
};

}  // namespace mh::stream
