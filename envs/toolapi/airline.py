"""Airline reservations: search, book, cancel, change flights, cabins and baggage over SQLite.

>>> import rowgym
>>> env = rowgym.make("rowgym/ToolAPI-Airline-v0")
>>> obs, info = env.reset(seed=11)
>>> sorted(t["function"]["name"] for t in env.tools)[:3]
['book_reservation', 'calculate', 'cancel_reservation']
>>> env.close()

Every seed builds a week of direct flights between a dozen airports, a set of
members with payment methods and reservations, and one task: book the cheapest
direct flight, cancel, move to another flight, change cabin or baggage, or answer a
question about a flight's status or a reservation's cost. A status question picks the
status first (uniformly over scheduled, delayed, cancelled), then a flight with it, so a
blind guess solves about a third of them.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from rowgym.envs.toolapi import names
from rowgym.envs.toolapi.base import ToolAPIEnv, ToolAPITask, call, dumps, fresh_id
from rowgym.tools import NoArgs, ToolArgs, ToolError, tool

SCHEMA = """
CREATE TABLE users (user_id TEXT PRIMARY KEY, first TEXT, last TEXT, email TEXT, membership TEXT);
CREATE TABLE payments (payment_id TEXT PRIMARY KEY, user_id TEXT, kind TEXT);
CREATE TABLE flights (flight_number TEXT, date TEXT, origin TEXT, destination TEXT, depart TEXT, status TEXT,
                      price_basic REAL, price_economy REAL, price_business REAL, seats INTEGER,
                      PRIMARY KEY (flight_number, date));
CREATE TABLE reservations (reservation_id TEXT PRIMARY KEY, user_id TEXT, flight_number TEXT, date TEXT,
                           cabin TEXT, passengers INTEGER, baggages INTEGER, payment_id TEXT, status TEXT,
                           total REAL);
"""

Cabin = Literal["basic_economy", "economy", "business"]
CABIN_COL = {"basic_economy": "price_basic", "economy": "price_economy", "business": "price_business"}
DATES = [f"2026-12-{d:02d}" for d in range(1, 8)]
KINDS = ["book", "cancel", "change_flight", "cabin", "baggage", "flight_status", "reservation_total"]
BAG_FEE = 50.0


class UserArgs(ToolArgs):
    user_id: str


class EmailArgs(ToolArgs):
    email: str


class ReservationArgs(ToolArgs):
    reservation_id: str


class SearchArgs(ToolArgs):
    origin: str = Field(description="IATA code, e.g. 'JFK'.")
    destination: str = Field(description="IATA code, e.g. 'SFO'.")
    date: str = Field(description="YYYY-MM-DD")


class FlightArgs(ToolArgs):
    flight_number: str
    date: str = Field(description="YYYY-MM-DD")


class BookArgs(FlightArgs):
    user_id: str
    cabin: Cabin
    passengers: int = Field(ge=1, le=9)
    payment_id: str


class ChangeFlightArgs(FlightArgs, ReservationArgs):
    pass


class CabinArgs(ReservationArgs):
    cabin: Cabin


class BaggageArgs(ReservationArgs):
    total_baggages: int = Field(ge=0, le=9)


class AirlineEnv(ToolAPIEnv):
    """Airline reservations domain (tau-bench style)."""

    family = "toolapi-airline"
    version = "1"  # 1: flight-status tasks ask each status equally often (0: ~80% "scheduled")
    schema = SCHEMA
    system_prompt = ("You are an airline reservations agent. Identify the member, look up flights and "
                     "reservations with the tools, make exactly the change the member asks for, then call "
                     "finish (with the answer, if the member asked a question).")

    def build_world(self, rng: random.Random) -> dict[str, list[tuple]]:
        codes = sorted(names.AIRPORTS)
        flights = []
        for _ in range(60):
            o, d = rng.sample(codes, 2)
            num = f"RG{rng.randrange(100, 999)}"
            base = rng.uniform(80, 400)
            for date in DATES:
                if rng.random() < 0.7:
                    flights.append((num, date, o, d, f"{rng.randrange(6, 22):02d}:{rng.choice(['00', '30'])}",
                                    rng.choices(["scheduled", "delayed", "cancelled"], [0.8, 0.15, 0.05])[0],
                                    round(base * 0.7, 2), round(base, 2), round(base * 2.6, 2), rng.randrange(0, 30)))
        flights = list({(f[0], f[1]): f for f in flights}.values())
        users, payments, reservations = [], [], []
        seen: set[str] = set()
        pay_ids: set[str] = set()
        for _ in range(10):
            first, last = rng.choice(names.FIRST), rng.choice(names.LAST)
            uid = f"{first.lower()}_{last.lower()}_{rng.randrange(100, 999)}"
            if uid in seen:
                continue
            seen.add(uid)
            users.append((uid, first, last, f"{first.lower()}{rng.randrange(10, 99)}@example.org",
                          rng.choice(["regular", "silver", "gold"])))
            pays = [(fresh_id(lambda k=k: f"{k}_{rng.randrange(10**5, 10**6)}", pay_ids), uid, k)
                    for k in rng.sample(["credit_card", "travel_voucher"], rng.randint(1, 2))]
            payments += pays
            for f in rng.sample([f for f in flights if f[5] != "cancelled"], rng.randint(1, 3)):
                cabin = rng.choice(list(CABIN_COL))
                pax, bags = rng.randint(1, 3), rng.randint(0, 3)
                price = {"basic_economy": f[6], "economy": f[7], "business": f[8]}[cabin]
                rid = fresh_id(lambda: f"R{rng.randrange(10**5, 10**6)}", seen)
                reservations.append((rid, uid, f[0], f[1], cabin, pax, bags,
                                     rng.choice(pays)[0], "active", round(price * pax + BAG_FEE * bags, 2)))
        return {"users": users, "payments": payments, "flights": flights, "reservations": reservations}

    def make_task(self, seed: int) -> ToolAPITask:
        rng = random.Random(f"{self.family}:task:{seed}")
        db = self._new_db(seed)
        try:
            q = lambda sql, *p: db.execute(sql, p).fetchall()  # noqa: E731
            kind = rng.choice(KINDS)
            uid, first, last, email = rng.choice(q("SELECT user_id, first, last, email FROM users ORDER BY user_id"))
            who = f"I'm {first} {last}, member id {uid}."
            gold = [call("get_user_details", user_id=uid)]
            res = q("SELECT reservation_id, flight_number, date, cabin, passengers, baggages, total, origin, "
                    "destination FROM reservations JOIN flights USING (flight_number, date) WHERE user_id=? "
                    "ORDER BY reservation_id", uid)
            rid, fnum, date, cabin, pax, bags, total, o, d = rng.choice(res)
            answer = None
            if kind == "book":
                o2, d2, date2 = rng.choice(q("SELECT origin, destination, date FROM flights WHERE status<>'cancelled' "
                                             "AND seats>=3 ORDER BY flight_number, date"))
                cab = rng.choice(list(CABIN_COL))
                n = rng.randint(1, 3)
                best = q(f"SELECT flight_number FROM flights WHERE origin=? AND destination=? AND date=? AND "
                         f"status<>'cancelled' AND seats>=? ORDER BY {CABIN_COL[cab]}, flight_number", o2, d2, date2, n)[0][0]
                pay = q("SELECT payment_id, kind FROM payments WHERE user_id=? ORDER BY payment_id", uid)[0]
                ask = (f"Book the cheapest direct flight from {o2} to {d2} on {date2} in {cab.replace('_', ' ')} "
                       f"for {n} passenger{'s' if n > 1 else ''}, paid with my {pay[1].replace('_', ' ')}.")
                gold += [call("search_direct_flights", origin=o2, destination=d2, date=date2),
                         call("book_reservation", user_id=uid, flight_number=best, date=date2, cabin=cab,
                              passengers=n, payment_id=pay[0])]
            elif kind == "cancel":
                ask = f"Please cancel my reservation {rid} (flight {fnum} on {date})."
                gold += [call("get_reservation_details", reservation_id=rid),
                         call("cancel_reservation", reservation_id=rid)]
            elif kind == "change_flight":
                alts = q("SELECT flight_number, date FROM flights WHERE origin=? AND destination=? AND "
                         "status<>'cancelled' AND seats>=? AND NOT (flight_number=? AND date=?) "
                         "ORDER BY date, depart, flight_number", o, d, pax, fnum, date)
                if not alts:
                    kind = "baggage"
                else:
                    nf, nd = alts[0]
                    ask = (f"Move my reservation {rid} to the earliest other direct flight from {o} to {d} "
                           f"(earliest date, then earliest departure).")
                    gold += [call("get_reservation_details", reservation_id=rid),
                             call("search_direct_flights", origin=o, destination=d, date=nd),
                             call("update_reservation_flight", reservation_id=rid, flight_number=nf, date=nd)]
            if kind == "cabin":
                new = rng.choice([c for c in CABIN_COL if c != cabin])
                ask = f"Please change the cabin of my reservation {rid} to {new.replace('_', ' ')}."
                gold += [call("get_reservation_details", reservation_id=rid),
                         call("update_reservation_cabin", reservation_id=rid, cabin=new)]
            elif kind == "baggage":
                nb = rng.choice([b for b in range(0, 5) if b != bags])
                ask = f"I want {nb} checked bag{'s' if nb != 1 else ''} in total on reservation {rid}."
                gold += [call("get_reservation_details", reservation_id=rid),
                         call("update_reservation_baggages", reservation_id=rid, total_baggages=nb)]
            elif kind == "flight_status":
                # the asked status first, uniformly over those the week has, then a flight with it: statuses
                # are drawn 0.8/0.15/0.05, and picking any flight let a blind "scheduled" solve ~80% (v0)
                status = rng.choice([r[0] for r in q("SELECT DISTINCT status FROM flights ORDER BY status")])
                fnum2, date2 = rng.choice(q("SELECT flight_number, date FROM flights WHERE status=? "
                                            "ORDER BY flight_number, date", status))
                ask = f"What is the status of flight {fnum2} on {date2}? Answer with one word."
                gold += [call("get_flight_status", flight_number=fnum2, date=date2)]
                answer = status
            elif kind == "reservation_total":
                ask = f"How much did reservation {rid} cost in total? Just the amount."
                gold += [call("get_reservation_details", reservation_id=rid)]
                answer = f"{total:.2f}"
            gold.append(call("finish", answer=answer or ""))
            return ToolAPITask(domain="airline", kind=kind, seed=seed, instruction=f"{who} {ask}", gold=gold,
                               answer=answer, facts={"user_id": uid, "reservation_id": rid, "email": email})
        finally:
            db.close()

    # ------------------------------------------------------------- the tools
    @tool
    async def find_user_id_by_email(self, args: EmailArgs) -> str:
        """Find a member's id from their email address."""
        row = self.one("SELECT user_id FROM users WHERE lower(email)=lower(?)", args.email, missing="member not found")
        self.progress("find_user_id_by_email", args)
        return row["user_id"]

    @tool
    async def get_user_details(self, args: UserArgs) -> str:
        """Get a member's name, membership level, payment methods and reservation ids."""
        u = self.one("SELECT * FROM users WHERE user_id=?", args.user_id, missing="member not found")
        pays = [dict(r) for r in self.query("SELECT payment_id, kind FROM payments WHERE user_id=? ORDER BY payment_id",
                                            args.user_id)]
        res = [r["reservation_id"] for r in self.query(
            "SELECT reservation_id FROM reservations WHERE user_id=? ORDER BY reservation_id", args.user_id)]
        self.progress("get_user_details", args)
        return dumps({**dict(u), "payment_methods": pays, "reservations": res})

    @tool
    async def get_reservation_details(self, args: ReservationArgs) -> str:
        """Get a reservation's flight, date, cabin, passengers, baggage, status and total paid."""
        r = self.one("SELECT * FROM reservations WHERE reservation_id=?", args.reservation_id,
                     missing="reservation not found")
        self.progress("get_reservation_details", args)
        return dumps(dict(r))

    @tool
    async def list_airports(self, args: NoArgs) -> str:
        """List the airports served, as IATA code and city."""
        self.progress("list_airports", args)
        return dumps(names.AIRPORTS)

    @tool
    async def search_direct_flights(self, args: SearchArgs) -> str:
        """Search direct flights between two airports on a date, with prices per cabin and seats left."""
        rows = self.query("SELECT * FROM flights WHERE origin=? AND destination=? AND date=? ORDER BY depart",
                          args.origin.upper(), args.destination.upper(), args.date)
        self.progress("search_direct_flights", args)
        return dumps([dict(r) for r in rows]) if rows else "No direct flights found."

    @tool
    async def get_flight_status(self, args: FlightArgs) -> str:
        """Get the status of a flight on a date: scheduled, delayed or cancelled."""
        f = self.one("SELECT status FROM flights WHERE flight_number=? AND date=?", args.flight_number, args.date,
                     missing="flight not found on that date")
        self.progress("get_flight_status", args)
        return f["status"]

    def _flight(self, number: str, date: str, seats: int):
        f = self.one("SELECT * FROM flights WHERE flight_number=? AND date=?", number, date,
                     missing="flight not found on that date")
        if f["status"] == "cancelled":
            raise ToolError(f"flight {number} on {date} is cancelled")
        if f["seats"] < seats:
            raise ToolError(f"flight {number} on {date} has only {f['seats']} seats left")
        return f

    def _active_reservation(self, rid: str):
        r = self.one("SELECT * FROM reservations WHERE reservation_id=?", rid, missing="reservation not found")
        if r["status"] != "active":
            raise ToolError(f"reservation {rid} is {r['status']}")
        return r

    def _reprice(self, rid: str) -> None:
        r = self.query("SELECT r.passengers, r.baggages, r.cabin, f.* FROM reservations r JOIN flights f "
                       "USING (flight_number, date) WHERE r.reservation_id=?", rid)[0]
        total = r[CABIN_COL[r["cabin"]]] * r["passengers"] + BAG_FEE * r["baggages"]
        self.write("UPDATE reservations SET total=? WHERE reservation_id=?", round(total, 2), rid)

    @tool
    async def book_reservation(self, args: BookArgs) -> str:
        """Book a flight for a member in a cabin for a number of passengers, paid with one of their payment ids."""
        self.one("SELECT user_id FROM users WHERE user_id=?", args.user_id, missing="member not found")
        self.one("SELECT payment_id FROM payments WHERE payment_id=? AND user_id=?", args.payment_id, args.user_id,
                 missing="payment method not found for this member")
        self._flight(args.flight_number, args.date, args.passengers)
        n = self.query("SELECT COUNT(*) AS n FROM reservations")[0]["n"]
        rid = f"RB{n + 1:05d}"  # deterministic, so replaying the gold plan gives the same id
        self.write("INSERT INTO reservations VALUES (?,?,?,?,?,?,?,?,?,?)", rid, args.user_id, args.flight_number,
                   args.date, args.cabin, args.passengers, 0, args.payment_id, "active", 0.0)
        self.write("UPDATE flights SET seats=seats-? WHERE flight_number=? AND date=?", args.passengers,
                   args.flight_number, args.date)
        self._reprice(rid)
        self.progress("book_reservation", args)
        return f"Booked reservation {rid}."

    @tool
    async def cancel_reservation(self, args: ReservationArgs) -> str:
        """Cancel an active reservation."""
        r = self._active_reservation(args.reservation_id)
        self.write("UPDATE reservations SET status='cancelled' WHERE reservation_id=?", args.reservation_id)
        self.write("UPDATE flights SET seats=seats+? WHERE flight_number=? AND date=?", r["passengers"],
                   r["flight_number"], r["date"])
        self.progress("cancel_reservation", args)
        return f"Reservation {args.reservation_id} cancelled."

    @tool
    async def update_reservation_flight(self, args: ChangeFlightArgs) -> str:
        """Move an active reservation to another flight (same cabin and passengers)."""
        r = self._active_reservation(args.reservation_id)
        if (r["flight_number"], r["date"]) == (args.flight_number, args.date):
            raise ToolError("the reservation is already on that flight")
        self._flight(args.flight_number, args.date, r["passengers"])
        self.write("UPDATE flights SET seats=seats+? WHERE flight_number=? AND date=?", r["passengers"],
                   r["flight_number"], r["date"])
        self.write("UPDATE flights SET seats=seats-? WHERE flight_number=? AND date=?", r["passengers"],
                   args.flight_number, args.date)
        self.write("UPDATE reservations SET flight_number=?, date=? WHERE reservation_id=?", args.flight_number,
                   args.date, args.reservation_id)
        self._reprice(args.reservation_id)
        self.progress("update_reservation_flight", args)
        return f"Reservation {args.reservation_id} moved to {args.flight_number} on {args.date}."

    @tool
    async def update_reservation_cabin(self, args: CabinArgs) -> str:
        """Change the cabin of an active reservation."""
        r = self._active_reservation(args.reservation_id)
        if r["cabin"] == args.cabin:
            raise ToolError(f"the reservation is already in {args.cabin}")
        self.write("UPDATE reservations SET cabin=? WHERE reservation_id=?", args.cabin, args.reservation_id)
        self._reprice(args.reservation_id)
        self.progress("update_reservation_cabin", args)
        return f"Cabin of {args.reservation_id} changed to {args.cabin}."

    @tool
    async def update_reservation_baggages(self, args: BaggageArgs) -> str:
        """Set the total number of checked bags on an active reservation ($50 each)."""
        self._active_reservation(args.reservation_id)
        self.write("UPDATE reservations SET baggages=? WHERE reservation_id=?", args.total_baggages,
                   args.reservation_id)
        self._reprice(args.reservation_id)
        self.progress("update_reservation_baggages", args)
        return f"Reservation {args.reservation_id} now has {args.total_baggages} checked bag(s)."
