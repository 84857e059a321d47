"""What the producer and the workers share, so that each thing is said once.

- ``connection``: the broker's address, credentials and connecting with retries.
- ``queues``: the two modes of the tutorial and the queue each one declares.
- ``tasks``: the text of a task, its AMQP properties, and how much work it is.
- ``output``: the tutorial's lines for people and the JSON events for reports.
- ``cli``: options that come from flags or the environment, and one-line errors.
"""
