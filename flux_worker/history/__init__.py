"""Image history and the activity log, kept in the counter store (COUNTERS_URL).

    entries.py   HistoryEntry (one kept image, whose, from which prompt), Page, owner names
    cells.py     a few keyed values that expire, changed atomically: in memory or a diskcache
    stores.py    HistoryStore: each owner's entries newest first, and everyone's for the admin
                 (memory, disk, Redis); entries expire with their images, a cap bounds each owner
    recorder.py  History: records what a generation stored (never failing it), lists, deletes
    activity.py  ActivityLog: the newest errors and refusals the API answered, for the admin

Above generation/ (it reads the generation's value types), below web/: no Flask here.
"""
