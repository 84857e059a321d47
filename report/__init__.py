"""What happened to a run's tasks, across the lab: the report and the live view.

gathered.py   read what playbooks/report.yml brought back (worker logs, producer record, queues)
fates.py      follow each task: received, done, lost, requeued; the verdict
foreign.py    the tasks no run of the lab's producer sent (a student's)
tables.py     the report as rows; terminal.py and markdown.py lay them out
timeline.py   the picture: one lane per worker, a bar per task
json_data.py  the same report as JSON
live.py       the live view's state, from the events the workers publish
watch.py      the live view while a run goes on (an AMQP client of the lab's broker)
lab_settings.py  the broker and its password, found from the inventory as the playbooks find them

The live view lives here, beside the offline report, although it is a broker
client: both tell the same story (the same task fates, the same words and
tables) from the same events, one read from the hosts afterwards and one heard
as they happen. Apart, the two would drift; what is AMQP in it is a small part
of watch.py (listen, queue_count), over workqueue.connection.
"""
