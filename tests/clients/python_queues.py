"""RQ and Celery job queues (on redis-py 6) against the server at the port
given: RQ keeps results in streams and uses WATCH/MULTI; Celery's Redis
transport uses lists, sorted sets, hashes and pub/sub. Prints one line
per library, which the test compares with a redis-server's."""
import sys

from redis import Redis

PORT = int(sys.argv[1])
URL = f"redis://127.0.0.1:{PORT}/0"


def double(n):
    return n * 2


def boom():
    raise ValueError("boom")


def rq_line():
    from rq import Queue, Retry
    from rq.worker import SimpleWorker

    conn = Redis(port=PORT)
    q = Queue("q", connection=conn)
    # By name: the worker imports this file as a module.
    jobs = [q.enqueue("python_queues.double", i) for i in range(4)]
    dep = q.enqueue("python_queues.double", 50, depends_on=jobs[0])
    bad = q.enqueue("python_queues.boom", retry=Retry(max=1))
    SimpleWorker([q], connection=conn).work(burst=True, logging_level="ERROR")
    results = [j.latest_result().return_value for j in jobs]
    return (
        f"rq {results} {dep.latest_result().return_value} {bad.get_status().value} "
        f"failed={q.failed_job_registry.count} finished={q.finished_job_registry.count}"
    )


def celery_line():
    from celery import Celery, group
    from celery.contrib.testing.worker import start_worker

    app = Celery("queues", broker=URL, backend=URL)
    app.conf.broker_connection_retry_on_startup = True

    @app.task
    def add(x, y):
        return x + y

    @app.task(bind=True, max_retries=2, default_retry_delay=0.1)
    def flaky(self, n):
        if self.request.retries < 1:
            raise self.retry()
        return n

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="ERROR"):
        sums = [r.get(timeout=20) for r in [add.delay(i, i) for i in range(5)]]
        retried = flaky.delay(7).get(timeout=20)
        later = add.apply_async((1, 1), countdown=0.5).get(timeout=20)
        grouped = group(add.s(i, 1) for i in range(3))().get(timeout=20)
    return f"celery {sums} {retried} {later} {grouped}"


if __name__ == "__main__":
    Redis(port=PORT).flushall()
    print(rq_line())
    print(celery_line())
