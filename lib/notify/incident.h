// Incidents: messages that match the rule are grouped by a key (the values of --key), so
// people hear once per incident rather than once per message. Pure logic with the clock
// passed in: the tool persists what changed (dirty()) and the tests drive time.
//
//   a match, no incident          -> open      (notified)
//   a match, open incident        -> counted; repeat (notified) when --every has passed
//                                    since the last notification of it
//   no match for --resolve-after,
//   or a --resolve-when match     -> resolving; notified as resolved once it stayed
//                                    resolved for --flap (0: at once)
//   a match while resolving       -> the incident goes on, silently: flapping is not news
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mh::notify {

constexpr char k_key_separator = '\x1f';  // in keys; shown as "/"

// The key as people read it: its parts joined by "/".
std::string display_key(std::string_view key);

enum class Event : uint8_t { open, repeat, resolved };
std::string_view event_name(Event event);

struct IncidentConfig {
    int64_t every_ns = 0;          // re-notify an open incident at most this often; 0: never
    int64_t resolve_after_ns = 0;  // resolved when no match came for this long; 0: never
    int64_t flap_ns = 0;           // a resolution is told only after it held this long
};

struct Incident {
    int64_t opened_ns = 0;
    int64_t last_seen_ns = 0;  // last matching message
    int64_t last_notified_ns = 0;
    int64_t resolved_ns = 0;            // nonzero: resolving since then (not yet told)
    uint64_t count = 0;                 // matching messages since it opened
    uint32_t notifications = 0;         // told so far (open, repeats)
    std::vector<std::byte> last_frame;  // the last matching message, for the resolution's text
    int64_t deadline_ns = 0;            // its pending timer (not saved: derived on restore)

    std::vector<std::byte> serialize() const;
    static std::optional<Incident> deserialize(std::span<const std::byte> bytes);
};

// What to tell: an event of the incident under `key`. For `resolved` the incident is
// already gone from the book, so it is handed over whole.
struct Told {
    std::string key;
    Event event;
    Incident incident;
};

class IncidentBook {
  public:
    explicit IncidentBook(const IncidentConfig& config) : m_config(config) {}

    // A message matched the rule.
    std::optional<Told> match(const std::string& key, int64_t now_ns,
                              std::span<const std::byte> frame);
    // A --resolve-when message: resolves the incidents whose key parts equal `parts`, where a
    // missing part (a name the message lacks, such as rule on telemetry) matches any value.
    // Keys are the parts joined by k_key_separator.
    std::vector<Told> clear(const std::vector<std::optional<std::string>>& parts, int64_t now_ns);
    // Timers: resolutions by absence and resolutions whose --flap hold-down ended.
    void tick(int64_t now_ns, std::vector<Told>& out);
    // When tick() has work next; nullopt when no timer is pending.
    std::optional<int64_t> next_deadline() const;

    // Restoring from the saved state.
    void restore(const std::string& key, Incident incident);
    const std::map<std::string, Incident>& incidents() const { return m_incidents; }
    // Keys changed since the last take (an absent key in incidents() was deleted).
    std::set<std::string> take_dirty() { return std::exchange(m_dirty, {}); }

  private:
    std::optional<Told> resolve(std::map<std::string, Incident>::iterator it, int64_t now_ns);
    void schedule(const std::string& key, Incident& incident);

    IncidentConfig m_config;
    std::map<std::string, Incident> m_incidents;
    std::set<std::string> m_dirty;
    std::set<std::pair<int64_t, std::string>>
        m_timers;  // (deadline, key): tick() looks at due ones only
};

}  // namespace mh::notify
