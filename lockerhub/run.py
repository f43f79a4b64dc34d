"""`make run`: the whole system on one machine, in the foreground.

Starts the embedded Redis (unless REDIS_URL is set), migrates, loads the demo data, then runs
Daphne, a Celery worker, Celery beat and one emulated bank per demo bank, prints where to
go, and stops every process it started on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _manage(*args: str) -> None:
    subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)  # noqa: S603


class Supervisor:
    """Starts child processes in their own sessions and stops them all, newest first."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603
        self.children.append((name, process))
        return process

    def adopt(self, name: str, process: subprocess.Popen) -> None:
        self.children.append((name, process))

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.children:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self, timeout: float = 15.0) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", file=sys.stderr)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--no-emulators", action="store_true", help="Do not start the emulated banks"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.conf import settings

    from lockerhub.embedded import start_redis

    supervisor = Supervisor()
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if not os.environ.get("REDIS_URL"):
            redis = start_redis(settings.EMBEDDED_REDIS_PORT, Path(settings.DATA_DIR) / "redis")
            if redis is not None:
                supervisor.adopt("redis", redis)
        _manage("migrate", "--noinput", "-v", "0")
        _manage("load_demo")

        env = dict(os.environ)
        supervisor.start(
            "daphne",
            [
                PYTHON,
                "-m",
                "daphne",
                "-b",
                args.host,
                "-p",
                str(args.port),
                "lockerhub.asgi:application",
            ],
            env,
        )
        supervisor.start(
            "celery-worker",
            [PYTHON, "-m", "celery", "-A", "lockerhub", "worker", "-l", "info", "-c", "2"],
            env,
        )
        supervisor.start(
            "celery-beat", [PYTHON, "-m", "celery", "-A", "lockerhub", "beat", "-l", "info"], env
        )
        emulated = [] if args.no_emulators else _start_emulators(supervisor, env, args)
        _banner(args, emulated)

        while not stopping:
            exited = supervisor.first_exited()
            if exited is not None:
                print(
                    f"\n{exited[0]} exited with status {exited[1]}; stopping everything.",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
        print("\nStopping…")
        return 0
    finally:
        supervisor.stop_all()


def _start_emulators(
    supervisor: Supervisor, env: dict[str, str], args: argparse.Namespace
) -> list[str]:
    from devices.actions import rotate_token
    from devices.models import LockerBank
    from lockerhub.audit import SYSTEM
    from lockerhub.demo import BANK_CODES

    started = []
    # The first demo bank serves the kiosk's offline feed where the kiosk page looks for it.
    kiosk_ports = {BANK_CODES[0]: "8765"}
    for bank in LockerBank.objects.filter(code__in=BANK_CODES):
        token = rotate_token(bank, actor=SYSTEM)  # the demo's own banks: a fresh token per run
        child_env = {**env, "LOCKERHUB_BANK_TOKEN": token}
        supervisor.start(
            f"emulator {bank.code}",
            [
                PYTHON,
                str(ROOT / "manage.py"),
                "emulate_bank",
                bank.code,
                "--server",
                f"ws://{args.host}:{args.port}",
                "--headless",
                "--kiosk-port",
                kiosk_ports.get(bank.code, "0"),
            ],
            child_env,
        )
        started.append(bank.code)
    return started


def _banner(args: argparse.Namespace, emulated: list[str]) -> None:
    from django.urls import Resolver404, resolve

    from lockerhub.demo import DEMO_PASSWORD, PEOPLE, badge_uid

    def served(path: str) -> bool:
        try:
            resolve(path)
        except Resolver404:
            return False
        return True

    base = f"http://{args.host}:{args.port}"
    pages = [
        ("Dashboard", "/dashboard/"),
        ("Kiosk A", "/kiosk/BANK-A/"),
        ("Kiosk B", "/kiosk/BANK-B/"),
        ("People (HR)", "/people/"),
        ("Reports", "/reports/"),
        ("Admin", "/admin/"),
        ("API docs", "/api/docs/"),
    ]
    lines = [
        "",
        "LockerHub is running (embedded mode: SQLite + embedded Redis). Ctrl-C stops everything.",
        "",
    ]
    lines += [f"  {label:<12}{base}{path}" for label, path in pages if served(path)]
    lines += [
        "",
        f"  Logins (password {DEMO_PASSWORD!r}): supervisor, hr, facilities, admin",
        "  Demo badges: "
        + ", ".join(f"{first} {badge_uid(number)}" for number, first, *_ in PEOPLE[:3])
        + " … (12 in all)",
    ]
    if emulated:
        lines.append(
            f"  Emulated banks: {', '.join(emulated)} "
            f"(tap a badge: `python manage.py emulate_bank BANK-A tap {badge_uid('E1001')}`)"
        )
    lines += _kiosk_pairing_lines(base)
    print("\n".join(lines) + "\n", flush=True)


def _kiosk_pairing_lines(base: str) -> list[str]:
    """A fresh one-time pairing link per demo bank, so a kiosk screen works out of the box."""
    from django.urls import reverse

    from devices.actions import pair_kiosk
    from devices.models import LockerBank
    from lockerhub.audit import SYSTEM
    from lockerhub.demo import BANK_CODES

    lines = ["", "  Kiosk screens: open a link once in the browser that shows the kiosk"]
    for bank in LockerBank.objects.filter(code__in=BANK_CODES):
        pairing = pair_kiosk(bank, "Demo kiosk", actor=SYSTEM)
        lines.append(f"    {bank.code}: {base}{reverse('devices:kiosk-pair', args=[pairing.code])}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
