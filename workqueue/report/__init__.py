"""What happened to a run's tasks, across the lab: the report and the live view.

gathered.py   read what playbooks/report.yml brought back (worker logs, producer record, queues)
fates.py      follow each task: received, done, lost, requeued; the verdict
foreign.py    the tasks no run of the lab's producer sent (a student's)
tables.py     the report as rows; terminal.py and markdown.py lay them out
timeline.py   the picture: one lane per worker, a bar per task
json_data.py  the same report as JSON
feed.py       what the live views hear from the broker: the programs' event feed, the queue's counts
live.py       the terminal live view's state, from the events the workers publish
watch.py      the terminal live view while a run goes on (make watch)
web/          the live view in a browser (make watch-web): the timeline drawing itself
lab_settings.py  the broker and its password, found from the inventory as the playbooks find them

The live views live here, beside the offline report, although they are broker
clients: all tell the same story (the same task fates, the same words, the
same picture) from the same events, one read from the hosts afterwards and the
others heard as they happen. Apart, they would drift; what is AMQP in them is
feed.py and web/listener.py, over workqueue.connection.
"""
