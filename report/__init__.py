"""What happened to a run's tasks, across the lab: the report and the live view.

gathered.py   read what playbooks/report.yml brought back (worker logs, producer record, queues)
fates.py      follow each task: received, done, lost, requeued; the verdict
tables.py     the report as rows; terminal.py and markdown.py lay them out
timeline.py   the picture: one lane per worker, a bar per task
json_data.py  the same report as JSON
watch.py      the live view while a run goes on
"""
