// Foreign records -> messages: a JSON object (an MQTT payload, an HTTP record, a line of a
// followed file) becomes a frame through JsonDecoder, so the mapping is mh-cat's, and then
// the transport's own knowledge and the operator's field mapping are applied on top:
//
//   source  the --source-key field if the record has it, else the topic level (MQTT), else
//           the record's own "source"
//   kind    the --kind-key field, else the topic level, else the record's "kind", else --kind
//   time    the --time-key field (epoch seconds, ms, us or ns, or RFC 3339 text), else the
//           record's "time", else the moment it was ingested
//   id      the record's "id", else a new time-ordered id; ingested: the record's, else now
//
// A field used as source, kind or time is taken out of the fields. A "gateway" in a record
// is dropped: only mh-endpoint vouches for one (DESIGN.md "The message").
//
// Other systems use mh's header names for their own ends: {"id": 4711}, {"time": "10:32"},
// {"source": 42}. A header key whose value mh cannot take is kept as a field named
// record_<key> (record_id), rather than refusing the record. A --source-key, --kind-key or
// --time-key that is itself a header name (--time-key time) reads that key as the option
// says, not as mh-cat would.
#pragma once

#include "json/json_codec.h"
#include "message/id.h"
#include "message/scratch_builder.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mh::ingest {

// The unit of an epoch number under --time-key. `automatic` reads it by magnitude: below
// 1e11 seconds (until the year 5138), below 1e14 ms, below 1e17 us, else ns.
enum class TimeUnit { automatic, s, ms, us, ns };

std::optional<TimeUnit> parse_time_unit(std::string_view text);  // auto, s, ms, us, ns

struct MappingOptions {
    std::string source_key;  // a field whose value is the source ("device.id")
    std::string kind_key;    // a field whose value is the kind
    std::string time_key;    // a field whose value is the event time
    TimeUnit time_unit = TimeUnit::automatic;
    std::string kind;        // the kind when nothing else gives one
};

// What the transport knows about a record beyond its JSON: the MQTT topic's levels.
struct RecordHints {
    std::string_view source;
    std::string_view kind;
};

// Epoch number -> ns, in `unit`; nullopt outside the int64 ns range.
std::optional<int64_t> epoch_to_ns(double value, TimeUnit unit);
std::optional<int64_t> epoch_to_ns(int64_t value, TimeUnit unit);

// Maps one record at a time. Not thread-safe; one per thread.
class Mapper {
public:
    Mapper(MappingOptions options, uint64_t id_seed);

    // Appends one frame to `out`, or returns why `json` is not a message ("expected a JSON
    // object", "time key \"ts\": expected epoch number or RFC 3339 text", ...) and leaves
    // `out` as it was. `now_ns` is the ingestion time.
    std::optional<std::string> map(std::string_view json, const RecordHints& hints, int64_t now_ns,
                                   std::vector<std::byte>& out, size_t max_frame_bytes);

private:
    MappingOptions m_options;
    JsonDecoder m_decoder;
    IdGenerator m_ids;
    ScratchBuilder m_builder;
    std::vector<std::byte> m_decoded;
    std::vector<std::pair<std::string, std::string>> m_key_renames;  // option keys that are header names
    std::vector<std::pair<std::string, std::string>> m_renames;      // of the record being mapped
    std::string m_renamed;
    std::string m_source_key, m_kind_key, m_time_key;  // the field names the options read, after renames
    std::string m_text;  // a numeric source or kind written as text
};

}  // namespace mh::ingest
