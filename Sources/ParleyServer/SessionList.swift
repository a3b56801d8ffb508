/// Sessions in an array, for walking them as fast as an array allows in the fan-out, with each
/// one's position, so adding and removing one is O(1) (removal moves the last one into the gap;
/// order does not matter to a fan-out).
/// Thread safety: a value type; the hub keeps its lists inside its lock, and the fan-out walks
/// copy-on-write snapshots of ``sessions``.
struct SessionList: Sequence {
    private(set) var sessions: [Session] = []
    private var positions: [ObjectIdentifier: Int] = [:]

    var isEmpty: Bool { sessions.isEmpty }
    var count: Int { sessions.count }

    mutating func insert(_ session: Session) {
        let id = ObjectIdentifier(session)
        guard positions[id] == nil else { return }
        positions[id] = sessions.count
        sessions.append(session)
    }

    mutating func remove(_ session: Session) {
        guard let index = positions.removeValue(forKey: ObjectIdentifier(session)) else { return }
        let last = sessions.removeLast()
        if index < sessions.count {
            sessions[index] = last
            positions[ObjectIdentifier(last)] = index
        }
    }

    func makeIterator() -> IndexingIterator<[Session]> { sessions.makeIterator() }
}
