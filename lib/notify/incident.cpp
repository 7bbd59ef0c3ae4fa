#include "notify/incident.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace mh::notify {
namespace {

// Saved layout: a version byte, then fixed little-endian integers, then the frame.
constexpr uint8_t k_layout_version = 1;
constexpr size_t k_fixed_bytes = 1 + 5 * 8 + 4;

void put64(std::vector<std::byte>& out, uint64_t value) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}
uint64_t get64(const std::byte* p) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = value << 8 | static_cast<uint8_t>(p[i]);
    return value;
}

}  // namespace

std::string display_key(std::string_view key) {
    std::string shown(key);
    std::replace(shown.begin(), shown.end(), k_key_separator, '/');
    return shown;
}

std::string_view event_name(Event event) {
    switch (event) {
        case Event::open:
            return "open";
        case Event::repeat:
            return "repeat";
        case Event::resolved:
            return "resolved";
    }
    return "open";
}

std::vector<std::byte> Incident::serialize() const {
    std::vector<std::byte> out;
    out.reserve(k_fixed_bytes + last_frame.size());
    out.push_back(static_cast<std::byte>(k_layout_version));
    put64(out, static_cast<uint64_t>(opened_ns));
    put64(out, static_cast<uint64_t>(last_seen_ns));
    put64(out, static_cast<uint64_t>(last_notified_ns));
    put64(out, static_cast<uint64_t>(resolved_ns));
    put64(out, count);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(notifications >> (8 * i)));
    out.insert(out.end(), last_frame.begin(), last_frame.end());
    return out;
}

std::optional<Incident> Incident::deserialize(std::span<const std::byte> bytes) {
    if (bytes.size() < k_fixed_bytes || static_cast<uint8_t>(bytes[0]) != k_layout_version)
        return std::nullopt;
    Incident incident;
    const std::byte* p = bytes.data() + 1;
    incident.opened_ns = static_cast<int64_t>(get64(p));
    incident.last_seen_ns = static_cast<int64_t>(get64(p + 8));
    incident.last_notified_ns = static_cast<int64_t>(get64(p + 16));
    incident.resolved_ns = static_cast<int64_t>(get64(p + 24));
    incident.count = get64(p + 32);
    uint32_t n = 0;
    for (int i = 3; i >= 0; --i) n = n << 8 | static_cast<uint8_t>(p[40 + i]);
    incident.notifications = n;
    incident.last_frame.assign(bytes.begin() + k_fixed_bytes, bytes.end());
    return incident;
}

void IncidentBook::schedule(const std::string& key, Incident& incident) {
    if (incident.deadline_ns != 0) m_timers.erase({incident.deadline_ns, key});
    incident.deadline_ns = incident.resolved_ns != 0 ? incident.resolved_ns + m_config.flap_ns
                           : m_config.resolve_after_ns > 0
                               ? incident.last_seen_ns + m_config.resolve_after_ns
                               : 0;
    if (incident.deadline_ns != 0) m_timers.emplace(incident.deadline_ns, key);
}

void IncidentBook::restore(const std::string& key, Incident incident) {
    incident.deadline_ns = 0;
    auto& stored = m_incidents[key] = std::move(incident);
    schedule(key, stored);
}

std::optional<Told> IncidentBook::match(const std::string& key, int64_t now_ns,
                                        std::span<const std::byte> frame) {
    m_dirty.insert(key);
    auto [it, inserted] = m_incidents.try_emplace(key);
    Incident& incident = it->second;
    incident.last_frame.assign(frame.begin(), frame.end());
    incident.last_seen_ns = now_ns;
    ++incident.count;
    incident.resolved_ns = 0;  // a recurrence while resolving: the incident goes on, silently
    schedule(key, incident);
    if (inserted) {
        incident.opened_ns = now_ns;
        incident.last_notified_ns = now_ns;
        incident.notifications = 1;
        return Told{key, Event::open, incident};
    }
    if (m_config.every_ns > 0 && now_ns - incident.last_notified_ns >= m_config.every_ns) {
        incident.last_notified_ns = now_ns;
        ++incident.notifications;
        return Told{key, Event::repeat, incident};
    }
    return std::nullopt;
}

std::optional<Told> IncidentBook::resolve(std::map<std::string, Incident>::iterator it,
                                          int64_t now_ns) {
    m_dirty.insert(it->first);
    if (it->second.resolved_ns == 0) it->second.resolved_ns = now_ns;
    if (now_ns - it->second.resolved_ns < m_config.flap_ns) {
        schedule(it->first, it->second);
        return std::nullopt;
    }
    if (it->second.deadline_ns != 0) m_timers.erase({it->second.deadline_ns, it->first});
    Told told{it->first, Event::resolved, std::move(it->second)};
    m_incidents.erase(it);
    return told;
}

std::vector<Told> IncidentBook::clear(const std::vector<std::optional<std::string>>& parts,
                                      int64_t now_ns) {
    std::vector<Told> told;
    if (m_incidents.empty()) return told;
    if (std::all_of(parts.begin(), parts.end(),
                    [](const auto& part) { return part.has_value(); })) {
        std::string key;  // the whole key: one lookup
        for (size_t i = 0; i < parts.size(); ++i)
            key += (i ? std::string(1, k_key_separator) : "") + *parts[i];
        auto it = m_incidents.find(key);
        if (it != m_incidents.end())
            if (auto one = resolve(it, now_ns)) told.push_back(std::move(*one));
        return told;
    }
    if (std::none_of(parts.begin(), parts.end(), [](const auto& part) { return part.has_value(); }))
        return told;
    for (auto it = m_incidents.begin(); it != m_incidents.end();) {
        auto next = std::next(it);
        std::string_view key = it->first;
        bool equal = true;
        for (size_t i = 0; i < parts.size() && equal; ++i) {
            size_t end = std::min(key.find(k_key_separator), key.size());
            if (parts[i] && *parts[i] != key.substr(0, end)) equal = false;
            key.remove_prefix(std::min(end + 1, key.size()));
        }
        if (equal)
            if (auto one = resolve(it, now_ns)) told.push_back(std::move(*one));
        it = next;
    }
    return told;
}

void IncidentBook::tick(int64_t now_ns, std::vector<Told>& out) {
    while (!m_timers.empty() && m_timers.begin()->first <= now_ns) {
        std::string key = m_timers.begin()->second;
        auto it = m_incidents.find(key);
        if (it == m_incidents.end()) {  // cannot happen: timers leave with their incident
            m_timers.erase(m_timers.begin());
            continue;
        }
        Incident& incident = it->second;
        // Resolved by absence: it ended when the absence began to count.
        if (incident.resolved_ns == 0)
            incident.resolved_ns = incident.last_seen_ns + m_config.resolve_after_ns;
        if (auto told = resolve(it, now_ns)) out.push_back(std::move(*told));
    }
}

std::optional<int64_t> IncidentBook::next_deadline() const {
    if (m_timers.empty()) return std::nullopt;
    return m_timers.begin()->first;
}

}  // namespace mh::notify
