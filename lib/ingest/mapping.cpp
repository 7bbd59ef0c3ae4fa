#include "ingest/mapping.h"

#include "ingest/records.h"

#include "message/time.h"
#include "wire/frame.h"

#include <capnp/serialize.h>
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstring>

namespace mh::ingest {

std::optional<TimeUnit> parse_time_unit(std::string_view text) {
    if (text == "auto") return TimeUnit::automatic;
    if (text == "s") return TimeUnit::s;
    if (text == "ms") return TimeUnit::ms;
    if (text == "us") return TimeUnit::us;
    if (text == "ns") return TimeUnit::ns;
    return std::nullopt;
}

namespace {
constexpr double k_auto_seconds_below = 1e11;
constexpr double k_auto_ms_below = 1e14;
constexpr double k_auto_us_below = 1e17;

int64_t ns_per_unit(TimeUnit unit, double magnitude) {
    if (unit == TimeUnit::automatic) {
        if (magnitude < k_auto_seconds_below) return k_ns_per_second;
        if (magnitude < k_auto_ms_below) return k_ns_per_ms;
        if (magnitude < k_auto_us_below) return k_ns_per_us;
        return 1;
    }
    switch (unit) {
        case TimeUnit::s: return k_ns_per_second;
        case TimeUnit::ms: return k_ns_per_ms;
        case TimeUnit::us: return k_ns_per_us;
        default: return 1;
    }
}

std::string_view view(capnp::Text::Reader text) { return {text.begin(), text.size()}; }

template <typename Init>
void init_copy(Init init, std::string_view bytes) {
    auto builder = init(static_cast<unsigned>(bytes.size()));
    if (!bytes.empty()) std::memcpy(builder.begin(), bytes.data(), bytes.size());
}

// A text or integer field as text (device ids are often numbers); nullopt for other types.
std::optional<std::string_view> field_as_text(schema::Field::Reader field, std::string& storage) {
    auto value = field.getValue();
    if (value.isText()) return view(value.getText());
    if (value.isInt()) {
        storage = std::to_string(value.getInt());
        return storage;
    }
    return std::nullopt;
}

std::optional<int64_t> field_as_time(schema::Field::Reader field, TimeUnit unit) {
    auto value = field.getValue();
    if (value.isInt()) return epoch_to_ns(value.getInt(), unit);
    if (value.isFloat()) return epoch_to_ns(value.getFloat(), unit);
    if (value.isText()) {
        auto text = view(value.getText());
        if (json::is_integer_text(text)) {
            int64_t number = 0;
            auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
            if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
            return epoch_to_ns(number, unit);
        }
        return json::parse_time_text(text);  // RFC 3339 within the int64 ns range
    }
    return std::nullopt;
}
}  // namespace

std::optional<int64_t> epoch_to_ns(int64_t value, TimeUnit unit) {
    int64_t factor = ns_per_unit(unit, std::fabs(static_cast<double>(value)));
    int64_t ns = 0;
    if (__builtin_mul_overflow(value, factor, &ns)) return std::nullopt;
    return ns;
}

std::optional<int64_t> epoch_to_ns(double value, TimeUnit unit) {
    if (!std::isfinite(value)) return std::nullopt;
    int64_t factor = ns_per_unit(unit, std::fabs(value));
    // Whole units and the fraction apart: a double holds 1.7e18 ns only to 256 ns.
    double whole = std::floor(value);
    if (!(whole > -9.2e18 && whole < 9.2e18)) return std::nullopt;
    auto fraction_ns = static_cast<int64_t>(std::llround((value - whole) * static_cast<double>(factor)));
    int64_t ns = 0;
    if (__builtin_mul_overflow(static_cast<int64_t>(whole), factor, &ns)) return std::nullopt;
    if (__builtin_add_overflow(ns, fraction_ns, &ns)) return std::nullopt;
    return ns;
}

namespace {
constexpr std::string_view k_header_keys[] = {"id", "time", "ingested", "source", "gateway", "kind", "body"};

bool is_header_key(std::string_view key) {
    for (auto header : k_header_keys)
        if (key == header) return true;
    return false;
}

// The header key that a decoder's refusal is about ("id: not a UUID" -> "id"), if any.
std::string_view refused_header_key(std::string_view reason) {
    size_t colon = reason.find(':');
    if (colon == std::string_view::npos) return {};
    std::string_view key = reason.substr(0, colon);
    return is_header_key(key) ? key : std::string_view();
}
}  // namespace

Mapper::Mapper(MappingOptions options, uint64_t id_seed) : m_options(std::move(options)), m_ids(id_seed) {
    auto own = [&](const std::string& key, std::string& field) {
        field = key;
        if (!key.empty() && is_header_key(key)) {
            field = "$" + key;  // a name no header key has, and not dotted
            m_key_renames.emplace_back(key, field);
        }
    };
    own(m_options.source_key, m_source_key);
    own(m_options.kind_key, m_kind_key);
    own(m_options.time_key, m_time_key);
}

std::optional<std::string> Mapper::map(std::string_view json, const RecordHints& hints, int64_t now_ns,
                                       std::vector<std::byte>& out, size_t max_frame_bytes) {
    m_decoded.clear();
    auto reason = m_key_renames.empty() ? m_decoder.decode(json, m_decoded) : std::optional<std::string>("");
    // A header key mh cannot take (or one an option reads) is renamed and the record decoded
    // again; a few rounds at most, one per header key.
    m_renames = m_key_renames;
    for (size_t round = 0; reason && round <= std::size(k_header_keys); ++round) {
        if (!reason->empty()) {
            std::string_view key = refused_header_key(*reason);
            if (key.empty()) return reason;
            bool known = false;
            for (const auto& rename : m_renames) known |= rename.first == key;
            if (known) return reason;
            m_renames.emplace_back(std::string(key), "record_" + std::string(key));
        }
        if (auto why = rename_keys(json, m_renames, m_renamed)) return reason->empty() ? why : reason;
        m_decoded.clear();
        reason = m_decoder.decode(m_renamed, m_decoded);
    }
    if (reason) return reason;
    // operator new aligns at least as strictly as a Cap'n Proto word.
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(m_decoded.data()),
                                          m_decoded.size() / sizeof(capnp::word));
    capnp::FlatArrayMessageReader reader(words, wire::reader_options({max_frame_bytes}));
    auto in = reader.getRoot<schema::Message>();
    if (in.getControl().isBarrier()) return std::string("a checkpoint barrier is not accepted from outside");

    auto fields = in.getFields();
    int source_at = -1, kind_at = -1, time_at = -1;
    for (unsigned i = 0; i < fields.size(); ++i) {
        auto name = view(fields[i].getName());
        if (!m_source_key.empty() && name == m_source_key) source_at = static_cast<int>(i);
        if (!m_kind_key.empty() && name == m_kind_key) kind_at = static_cast<int>(i);
        if (!m_time_key.empty() && name == m_time_key) time_at = static_cast<int>(i);
    }

    std::string source_storage, kind_storage;
    std::string_view source = view(in.getSource());
    if (source_at >= 0) {
        auto text = field_as_text(fields[source_at], source_storage);
        if (!text) return fmt::format("source key \"{}\": expected text or an integer", m_options.source_key);
        source = *text;
    } else if (!hints.source.empty()) {
        source = hints.source;
    }
    std::string_view kind = view(in.getKind());
    if (kind_at >= 0) {
        auto text = field_as_text(fields[kind_at], kind_storage);
        if (!text) return fmt::format("kind key \"{}\": expected text or an integer", m_options.kind_key);
        kind = *text;
    } else if (!hints.kind.empty()) {
        kind = hints.kind;
    }
    if (kind.empty()) kind = m_options.kind;
    int64_t time = in.getTime();
    if (time_at >= 0) {
        auto parsed = field_as_time(fields[time_at], m_options.time_unit);
        if (!parsed)
            return fmt::format("time key \"{}\": expected epoch seconds, ms, us or ns, or RFC 3339 text",
                               m_options.time_key);
        time = *parsed;
    }

    auto message = m_builder.start();
    if (in.hasId() && in.getId().size() == sizeof(MessageId)) {
        message.setId(in.getId());
    } else {
        MessageId id = m_ids.next(now_ns);
        std::memcpy(message.initId(id.size()).begin(), id.data(), id.size());
    }
    int64_t ingested = in.getIngested() != 0 ? in.getIngested() : now_ns;
    message.setIngested(ingested);
    message.setTime(time != 0 ? time : ingested);
    if (!source.empty()) init_copy([&](unsigned n) { return message.initSource(n); }, source);
    if (!kind.empty()) init_copy([&](unsigned n) { return message.initKind(n); }, kind);
    unsigned kept = fields.size() - (source_at >= 0) - (kind_at >= 0 && kind_at != source_at) -
                    (time_at >= 0 && time_at != source_at && time_at != kind_at);
    if (kept > 0) {
        auto out_fields = message.initFields(kept);
        unsigned k = 0;
        for (unsigned i = 0; i < fields.size(); ++i) {
            int at = static_cast<int>(i);
            if (at == source_at || at == kind_at || at == time_at) continue;
            out_fields.setWithCaveats(k++, fields[i]);
        }
    }
    if (in.hasBody()) message.setBody(in.getBody());

    size_t before = out.size();
    wire::append_frame(m_builder.builder(), out);
    if (out.size() - before > max_frame_bytes) {
        size_t size = out.size() - before;
        out.resize(before);
        return fmt::format("message of {} bytes is over the frame limit of {} bytes", size, max_frame_bytes);
    }
    return std::nullopt;
}

}  // namespace mh::ingest
