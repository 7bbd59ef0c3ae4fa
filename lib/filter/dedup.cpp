#include "filter/dedup.h"

#include "filter/hash.h"
#include "message/time.h"

#include <algorithm>
#include <cassert>

namespace mh::filter {
namespace {
constexpr size_t k_min_table_slots = 16;
}

DedupSet::DedupSet(size_t capacity, int64_t window_ns)
    : m_capacity(std::clamp<size_t>(capacity, 1, k_max_dedup_entries)),
      m_window_ms(std::max<int64_t>(0, (window_ns + k_ns_per_ms - 1) / k_ns_per_ms)),
      m_ring(std::make_unique_for_overwrite<MessageId[]>(m_capacity)) {
    // Half full at most, so probe runs stay short and a lookup always meets an empty slot.
    size_t slots = k_min_table_slots;
    while (slots < 2 * m_capacity) slots *= 2;
    m_table.assign(slots, Slot{0, 0});
    m_mask = slots - 1;
}

DedupSet::Seen DedupSet::check(std::span<const uint8_t, 16> id_bytes) {
    MessageId id;
    std::copy(id_bytes.begin(), id_bytes.end(), id.begin());
    uint64_t hash = hash_id(id_bytes);
    int64_t ms = id_time_ms(id_bytes);
    if (ms > m_newest_ms) {
        m_newest_ms = ms;
        // Arrival order is nearly id order, so the oldest are at the front; one that came
        // late stays until it reaches the front, which only keeps it a little longer.
        while (m_count > 0 && id_time_ms(m_ring[m_head]) < m_newest_ms - m_window_ms) {
            remove_oldest();
            ++m_expired;
        }
    }
    if (find(id, hash) != k_none) return Seen::again;
    if (ms < m_newest_ms - m_window_ms) return Seen::first;
    if (m_count == m_capacity) {
        remove_oldest();
        ++m_evicted;
    }
    insert(id, hash);
    return Seen::first;
}

size_t DedupSet::find(const MessageId& id, uint64_t hash) const {
    auto tag = static_cast<uint32_t>(hash);
    for (size_t i = hash & m_mask;; i = (i + 1) & m_mask) {
        const Slot& slot = m_table[i];
        if (slot.entry == 0) return k_none;
        if (slot.hash == tag && m_ring[slot.entry - 1] == id) return i;
    }
}

void DedupSet::insert(const MessageId& id, uint64_t hash) {
    size_t position = (m_head + m_count) % m_capacity;
    m_ring[position] = id;
    size_t i = hash & m_mask;
    while (m_table[i].entry != 0) i = (i + 1) & m_mask;
    m_table[i] = {static_cast<uint32_t>(position + 1), static_cast<uint32_t>(hash)};
    ++m_count;
}

void DedupSet::remove_oldest() {
    const MessageId& oldest = m_ring[m_head];
    uint64_t hash = hash_id(oldest);
    auto entry = static_cast<uint32_t>(m_head + 1);
    size_t i = hash & m_mask;
    while (m_table[i].entry != entry) {
        assert(m_table[i].entry != 0 && "every id in the ring is in the table");
        i = (i + 1) & m_mask;
    }
    erase_slot(i);
    m_head = (m_head + 1) % m_capacity;
    --m_count;
}

void DedupSet::erase_slot(size_t hole) {
    // Backward-shift deletion: pull later members of the probe run into the hole when
    // their home slot is not between the hole and where they are, so that every lookup
    // still finds them without tombstones.
    for (size_t j = (hole + 1) & m_mask; m_table[j].entry != 0; j = (j + 1) & m_mask) {
        size_t home = m_table[j].hash & m_mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays) continue;
        m_table[hole] = m_table[j];
        hole = j;
    }
    m_table[hole] = {0, 0};
}

}  // namespace mh::filter
