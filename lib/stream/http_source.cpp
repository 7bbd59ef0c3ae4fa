#include "stream/http_source.h"

#include "core/error.h"
#include "message/time.h"
#include "stream/log_sparingly.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <random>
#include <thread>

namespace mh::stream {

namespace {

uint64_t random_seed() {
    std::random_device device;
    return (uint64_t{device()} << 32) ^ device();
}

HttpSource& self(void* userdata) { return *static_cast<HttpSource*>(userdata); }

size_t on_body(char* data, size_t size, size_t count, void* me) {
    return self(me).append_body(data, size * count) ? size * count : 0;  // 0 aborts the transfer
}

size_t on_header(char* data, size_t size, size_t count, void* me) {
    self(me).header_line(std::string_view(data, size * count));
    return size * count;
}

int on_progress(void* me, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return self(me).stop_requested() ? 1 : 0;  // non-zero aborts: a stop does not wait for a slow server
}

bool iequals_prefix(std::string_view line, std::string_view name) {
    if (line.size() < name.size()) return false;
    for (size_t i = 0; i < name.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
    return true;
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == '\r' || text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    return text;
}

template <typename T>
void setopt(CURL* curl, CURLoption option, T value) {
    if (CURLcode rc = curl_easy_setopt(curl, option, value); rc != CURLE_OK)
        throw Error(ExitCode::config, fmt::format("libcurl option {}: {}", static_cast<int>(option), curl_easy_strerror(rc)));
}

}  // namespace

HttpSource::HttpSource(const HttpOptions& options, const ingest::MappingOptions& mapping, const StopFlag* stop,
                       Log& log, metrics::Registry& metrics, wire::FrameLimits limits)
    : m_options(options),
      m_stop(stop),
      m_log(log),
      m_limits(limits),
      m_mapper(mapping, random_seed()),
      m_changed(metrics.counter("mh_stream_polls_total", "Polls of the HTTP source, by result", "result=\"changed\"")),
      m_not_modified(
          metrics.counter("mh_stream_polls_total", "Polls of the HTTP source, by result", "result=\"not_modified\"")),
      m_failed(metrics.counter("mh_stream_polls_total", "Polls of the HTTP source, by result", "result=\"failed\"")),
      m_dropped_duplicate(metrics.counter("mh_dropped_total", "Messages dropped, by reason", "reason=\"duplicate\"")) {
    if (!options.url.starts_with("http://") && !options.url.starts_with("https://"))
        throw Error(ExitCode::usage, fmt::format("--url '{}': expected http:// or https://", options.url));
    for (const auto& header : options.headers)
        if (header.find(':') == std::string::npos)
            throw Error(ExitCode::usage, fmt::format("--header '{}': expected 'Name: value'", header));
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    CURL* curl = curl_easy_init();
    if (!curl) throw Error(ExitCode::software, "curl_easy_init failed");
    m_curl = curl;
    setopt(curl, CURLOPT_URL, options.url.c_str());
    setopt(curl, CURLOPT_NOSIGNAL, 1L);
    setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    setopt(curl, CURLOPT_MAXREDIRS, 5L);
    setopt(curl, CURLOPT_ACCEPT_ENCODING, "");  // whatever this libcurl can decode (gzip, ...)
    setopt(curl, CURLOPT_USERAGENT, "mh-stream/0.1.0");
    setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
    setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(options.timeout, std::chrono::milliseconds(10000)).count()));
    setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    setopt(curl, CURLOPT_WRITEDATA, this);
    setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    setopt(curl, CURLOPT_HEADERDATA, this);
    setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    setopt(curl, CURLOPT_XFERINFODATA, this);
    setopt(curl, CURLOPT_NOPROGRESS, 0L);
    if (!options.cafile.empty()) setopt(curl, CURLOPT_CAINFO, options.cafile.c_str());
}

HttpSource::~HttpSource() {
    if (m_header_list) curl_slist_free_all(m_header_list);
    if (m_curl) curl_easy_cleanup(static_cast<CURL*>(m_curl));
}

bool HttpSource::append_body(const char* data, size_t size) {
    if (m_body.size() + size > m_options.max_response_bytes) {
        m_body_too_large = true;
        return false;
    }
    m_body.append(data, size);
    return true;
}

void HttpSource::header_line(std::string_view line) {
    if (line.starts_with("HTTP/")) {  // a new response (after a redirect or a 100): forget the last one's
        m_response_etag.clear();
        m_response_modified.clear();
    } else if (iequals_prefix(line, "etag:")) {
        m_response_etag = std::string(trim(line.substr(5)));
    } else if (iequals_prefix(line, "last-modified:")) {
        m_response_modified = std::string(trim(line.substr(14)));
    }
}

void HttpSource::poll() {
    CURL* curl = static_cast<CURL*>(m_curl);
    ++m_polls;
    if (m_header_list) curl_slist_free_all(m_header_list);
    m_header_list = nullptr;
    for (const auto& header : m_options.headers) m_header_list = curl_slist_append(m_header_list, header.c_str());
    if (!m_etag.empty()) m_header_list = curl_slist_append(m_header_list, ("If-None-Match: " + m_etag).c_str());
    if (!m_last_modified.empty())
        m_header_list = curl_slist_append(m_header_list, ("If-Modified-Since: " + m_last_modified).c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, m_header_list);
    m_body.clear();
    m_body_too_large = false;
    CURLcode rc = curl_easy_perform(curl);
    if (stop_requested()) return;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    auto failed = [&](const std::string& why) {
        m_failed.add();
        ++m_failures;
        if (log_sparingly(m_failures))
            m_log.warn("poll of {} failed: {}; trying again in {} ms ({} failures so far)", m_options.url, why,
                       m_options.interval.count(), m_failures);
    };
    if (rc != CURLE_OK) {
        failed(m_body_too_large ? fmt::format("the response is over {} bytes", m_options.max_response_bytes)
                                : std::string(curl_easy_strerror(rc)));
        return;
    }
    if (status == 304) {
        m_not_modified.add();
        m_log.debug("{}: not modified", m_options.url);
        return;
    }
    if (status < 200 || status > 299) {
        failed(fmt::format("HTTP status {}", status));
        return;
    }
    m_changed.add();
    m_etag = m_response_etag;
    m_last_modified = m_response_modified;
    if (auto reason = m_extractor.extract(m_body, m_options.records, m_options.key, m_records)) {
        failed(*reason);
        return;
    }
    m_current.clear();
    size_t fresh = 0;
    int64_t now = wall_clock_ns();
    for (const auto& record : m_records) {
        std::string identity = record.key.empty() ? fmt::format("#{:016x}", ingest::fnv1a(record.json)) : record.key;
        bool seen = m_previous.contains(identity);
        m_current.insert(std::move(identity));
        if (seen) {
            ++m_duplicates;
            m_dropped_duplicate.add();
            continue;
        }
        m_frame.clear();
        if (auto reason = m_mapper.map(record.json, {}, now, m_frame, m_limits.max_frame_bytes)) {
            ++m_rejected;
            if (log_sparingly(m_rejected))
                m_log.warn("{}: a record: {} ({} rejected so far)", m_options.url, *reason, m_rejected);
            continue;
        }
        m_ready.push_back(m_frame);
        ++fresh;
    }
    m_previous.swap(m_current);
    m_log.debug("{}: {} records, {} new", m_options.url, m_records.size(), fresh);
}

wire::Next HttpSource::next(wire::Wait wait, wire::Frame& frame) {
    constexpr auto k_slice = std::chrono::milliseconds(100);  // how soon a stop is noticed
    for (;;) {
        if (!m_ready.empty()) {
            m_frame = std::move(m_ready.front());
            m_ready.pop_front();
            frame.words = reinterpret_cast<const capnp::word*>(m_frame.data());
            frame.word_count = m_frame.size() / sizeof(capnp::word);
            return wire::Next::frame;
        }
        if (stop_requested()) return wire::Next::end;
        auto now = std::chrono::steady_clock::now();
        if (now >= m_next_poll) {
            m_next_poll = now + m_options.interval;
            poll();
            continue;
        }
        if (wait == wire::Wait::no) return wire::Next::idle;
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(m_next_poll - now, k_slice));
    }
}

}  // namespace mh::stream
