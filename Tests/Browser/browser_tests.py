"""Browser tests: Parley's web client in real headless Chromium, against a real `parley serve`.

Run by scripts/test (which installs chromium, chromium-driver and selenium) as
    python3 Tests/Browser/browser_tests.py [-k pattern]
with PARLEY_BIN naming the parley executable. Each test saves a screenshot under
test-output/browser/. Nothing sleeps to order events: every wait is for a condition, with a
timeout.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARLEY = os.environ.get("PARLEY_BIN", os.path.join(ROOT, ".build", "debug", "parley"))
OUTPUT = os.path.join(ROOT, "test-output", "browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"
WAIT = 15

# The colours of app.css (light scheme), as Chromium reports them.
GREEN, PURPLE, BLUE = (21, 128, 61), (126, 34, 206), (29, 78, 216)


class Server:
    """`parley serve` on free ports with its own data folder; restartable on the same ports.
    With `tls` (a TestPKI), both ports speak TLS with its server certificate."""

    def __init__(self, tls=None):
        self.data = tempfile.mkdtemp(prefix="parley-browser-")
        self.port = 0
        self.http = 0
        self.process = None
        self.tls = tls
        self.start()

    def start(self):
        deadline = time.time() + 20
        tls = ["--tls-cert", self.tls.certificate, "--tls-key", self.tls.key] if self.tls else []
        while True:
            self.process = subprocess.Popen(
                [PARLEY, "serve", "--port", str(self.port), "--http-port", str(self.http), "--data-dir", self.data,
                 "--bcrypt-cost", "4", "--log-level", "warning"] + tls,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            lines = [self.process.stdout.readline(), self.process.stdout.readline()]
            native = re.search(r"listening on [^ ]+:(\d+)", lines[0])
            http = re.search(r"https?://[^/]+:(\d+)/", lines[1])
            if native and http:
                self.port, self.http = int(native.group(1)), int(http.group(1))
                return
            self.process.wait(10)
            errors = self.process.stderr.read()
            self.process.stdout.close()
            self.process.stderr.close()
            if time.time() > deadline:
                raise RuntimeError("the server did not start: " + "".join(lines) + errors)
            time.sleep(0.1)  # the old process's port is still in TIME_WAIT: bind again

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
        if self.process:
            self.process.stdout.close()
            self.process.stderr.close()

    def restart(self):
        self.stop()
        self.start()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http}/"

    @property
    def control_socket(self):
        """Where `parley serve` listens for `parley admin`: in its data folder (a short path)."""
        return os.path.join(self.data, "parley.sock")

    def admin(self, *arguments):
        """Runs `parley admin --socket <control socket> ARGUMENTS`, as an operator would; returns
        its exit status and what it wrote."""
        done = subprocess.run([PARLEY, "admin", "--socket", self.control_socket, *arguments],
                              capture_output=True, text=True, timeout=WAIT * 2)
        return done.returncode, done.stdout + done.stderr

    def online_names(self):
        """Who `parley admin --json online` lists, lower-cased, as the raw output (for `in`)."""
        status, output = self.admin("--json", "online")
        if status != 0:
            raise AssertionError(f"parley admin --json online: {output}")
        return output.lower()

    def close(self):
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


class TestPKI:
    """A certificate authority and a server certificate for 127.0.0.1 and localhost, made with
    openssl in `folder` (the same as the Swift tests' TestPKI), and the certificate's public-key
    hash for Chromium's --ignore-certificate-errors-spki-list."""

    def __init__(self, folder):
        self.folder = folder
        # The same openssl configuration as the Swift tests' TestPKI.
        shutil.copyfile(os.path.join(ROOT, "Tests", "TLS", "test-pki.cnf"), os.path.join(folder, "openssl.cnf"))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self.openssl("req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *ec, "-keyout", "ca.key", "-out", "ca.pem",
                     "-days", "2", "-subj", "/CN=Parley Browser Test CA", "-set_serial", "1")
        self.openssl("req", "-new", "-config", "openssl.cnf", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=parley-browser-test")
        self.openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "4097", "-days", "2",
                     "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.pem")
        self.openssl("x509", "-in", "server.pem", "-pubkey", "-noout", "-out", "spki.pem")
        self.openssl("pkey", "-pubin", "-in", "spki.pem", "-outform", "der", "-out", "spki.der")
        digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary", "spki.der"], cwd=folder, check=True, capture_output=True).stdout
        self.spki = base64.b64encode(digest).decode()
        self.ca = os.path.join(folder, "ca.pem")
        self.certificate = os.path.join(folder, "server.pem")
        self.key = os.path.join(folder, "server.key")

    def openssl(self, *arguments):
        subprocess.run(["openssl", *arguments], cwd=self.folder, check=True, capture_output=True)


class Native:
    """A native-protocol client (length-prefixed JSON over TCP, or over TLS trusting the CA file `ca`)."""

    def __init__(self, port, ca=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        if ca:
            self.sock = ssl.create_default_context(cafile=ca).wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.buffer = b""
        self.next_id = 1
        self.frames = []
        assert self.receive()["type"] == "hello"

    def send(self, frame):
        data = json.dumps(frame).encode()
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def receive(self):
        while len(self.buffer) < 4 or len(self.buffer) < 4 + struct.unpack(">I", self.buffer[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        length = struct.unpack(">I", self.buffer[:4])[0]
        frame = json.loads(self.buffer[4:4 + length])
        self.buffer = self.buffer[4 + length:]
        return frame

    def ask(self, frame):
        """Sends a request and returns its reply, an error or not."""
        frame = dict(frame, id=self.next_id)
        self.next_id += 1
        self.send(frame)
        while True:
            reply = self.receive()
            if reply.get("id") == frame["id"]:
                return reply
            self.frames.append(reply)

    def request(self, frame):
        reply = self.ask(frame)
        if reply["type"] == "error":
            raise AssertionError(f"{frame['type']}: {reply}")
        return reply

    def register_and_login(self, name, register=True):
        if register:
            self.request({"type": "register", "username": name, "password": PASSWORD})
        self.request({"type": "login", "username": name, "password": PASSWORD})
        while self.receive()["type"] != "replay_end":
            pass
        return self

    def say(self, text, room=None, to=None):
        frame = {"type": "send", "text": text}
        if to:
            frame["to"] = to
        else:
            frame["room"] = room or "general"
        return self.request(frame)

    def wait_for(self, predicate):
        for frame in self.frames:
            if predicate(frame):
                self.frames.remove(frame)
                return frame
        while True:
            frame = self.receive()
            if predicate(frame):
                return frame
            self.frames.append(frame)

    def close(self):
        self.sock.close()


def browser(width=1200, height=800, arguments=()):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--force-prefers-reduced-motion", "--lang=en-GB", *arguments]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    return driver


class Page:
    """One person's browser tab, with the steps a person takes."""

    def __init__(self, server, width=1200, height=800, arguments=()):
        self.server = server
        self.driver = browser(width, height, arguments)
        self.driver.get(server.url)

    def wait(self, condition, message, timeout=WAIT):
        # The list is redrawn as messages arrive: an element read a moment ago may be gone.
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: condition(), message)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, element_id):
        return self.driver.execute_script(f"return !document.getElementById('{element_id}').hidden")

    def fill(self, element_id, text):
        field = self.find("#" + element_id)
        field.clear()
        field.send_keys(text)

    def signin_status(self):
        return self.find("#signin-status").text

    def sign_in(self, button, name, password):
        """Waits for the server's hello, fills in the form and presses `button` (login or register)."""
        self.wait(lambda: self.driver.execute_script("return !!(window.parley && window.parley.app.hello)"), "the hello")
        self.fill("username", name)
        self.fill("password", password)
        self.find("#" + button).click()

    def register(self, name, password=PASSWORD):
        self.sign_in("register", name, password)

    def login(self, name, password=PASSWORD):
        self.sign_in("login", name, password)

    def in_chat(self, timeout=WAIT):
        self.wait(lambda: self.visible("chat") and self.driver.execute_script("return window.parley.app.loggedIn && !window.parley.app.replaying"),
                  "the chat to open", timeout)
        return self

    def stored(self, key):
        """A value of the page's local storage (None when absent)."""
        return self.driver.execute_script("return localStorage.getItem(arguments[0])", key)

    def pending_revokes(self):
        return json.loads(self.stored("parley.pendingRevoke") or "[]")

    def banner(self):
        return self.find("#banner").text if self.visible("banner") else ""

    def removed_open(self):
        return self.driver.execute_script("return document.getElementById('removed').open")

    def system_lines(self):
        """The operator's notices shown in the open conversation, as text."""
        return [e.text for e in self.finds("#messages .msg.kind-system")]

    def socket_open(self):
        """Whether the page has a WebSocket at all (connected or connecting)."""
        return self.driver.execute_script("return !!window.parley.link.ws")

    def account_open(self):
        return self.driver.execute_script("return document.getElementById('account').open")

    def open_account(self):
        self.find("#account-open").click()
        self.wait(self.account_open, "the account dialog")

    def sessions(self):
        """The rows of the account dialog's session list, as shown."""
        return [e.text for e in self.finds("#sessions-list li")]

    def change_password(self, current, new, again=None):
        self.fill("current-password", current)
        self.fill("new-password", new)
        self.fill("confirm-password", new if again is None else again)
        self.find("#change-password").click()

    def password_status(self):
        return self.find("#password-status").text

    def mark_connection(self):
        """Remembers the page's current WebSocket, for reconnected()."""
        self.driver.execute_script("window.markedSocket = window.parley.link.ws")

    def reconnected(self):
        """Whether the page is connected again on a WebSocket other than the marked one."""
        return self.driver.execute_script(
            "return window.parley.link.ws !== window.markedSocket && window.parley.link.connected")

    def open(self, key):
        self.find(f'.conv[data-key="{key}"]').click()
        self.wait(lambda: self.driver.execute_script("return window.parley.app.openKey") == key, f"{key} to open")

    def say(self, text):
        box = self.find("#composer")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)
        self.wait(lambda: text in self.texts(), f"'{text}' to be shown after sending")

    def texts(self):
        """The texts of the messages shown in the open conversation, oldest first."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#messages .msg[data-id] .text')].map((e) => e.textContent)")

    def wait_text(self, text):
        self.wait(lambda: text in self.texts(), f"'{text}' to appear (shown: {self.texts()[-5:]})")
        return self.message(text)

    def message(self, text):
        for item in self.finds("#messages .msg[data-id]"):
            if item.find_element(By.CSS_SELECTOR, ".text").text == text:
                return item
        raise AssertionError(f"no message '{text}'")

    def colour(self, text):
        """The colour of a message's text, as (red, green, blue)."""
        value = self.message(text).find_element(By.CSS_SELECTOR, ".text").value_of_css_property("color")
        return tuple(int(part) for part in re.findall(r"\d+", value)[:3])

    def unread(self, key):
        badges = self.finds(f'.conv[data-key="{key}"] .unread')
        return int(badges[0].text) if badges else 0

    def screenshot(self, name):
        os.makedirs(OUTPUT, exist_ok=True)
        self.driver.save_screenshot(os.path.join(OUTPUT, name + ".png"))

    def close(self):
        self.driver.quit()


class BrowserTests(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        self.pages = []
        self.natives = []

    def tearDown(self):
        problems = []
        for number, page in enumerate(self.pages):
            try:
                page.screenshot(f"{self._testMethodName[5:]}-{number}-end")
                # No script error and no Content-Security-Policy violation in any page (a refused
                # WebSocket while the server restarts is expected, and logged by Chromium).
                for entry in page.driver.get_log("browser"):
                    if entry["level"] == "SEVERE" and "WebSocket connection" not in entry["message"]:
                        problems.append(entry["message"])
            except WebDriverException:
                pass
            page.close()
        for native in self.natives:
            native.close()
        self.server.close()
        self.assertEqual(problems, [], "the browser console reported errors")

    def page(self, width=1200, height=800, arguments=()):
        page = Page(self.server, width, height, arguments)
        self.pages.append(page)
        return page

    def native(self, name, register=True):
        client = Native(self.server.port).register_and_login(name, register)
        self.natives.append(client)
        return client

    def login_with_token(self, name, token):
        """What the server answers a fresh connection's login with `token`."""
        client = Native(self.server.port)
        self.natives.append(client)
        return client.ask({"type": "login", "username": name, "token": token})

    def throttle(self, name, failures):
        """Fails `failures` logins in a row for `name` (from this machine's address, like the pages),
        waiting out each refusal, so that the server's back-off reaches 2^(failures - 5) s."""
        client = Native(self.server.port)
        self.natives.append(client)
        failed = 0
        while failed < failures:
            reply = client.ask({"type": "login", "username": name, "password": "wrong password"})
            if reply.get("code") == "RATE_LIMITED":
                time.sleep(0.1)  # polls until the back-off has passed
                continue
            self.assertEqual(reply.get("code"), "INVALID_CREDENTIALS", reply)
            failed += 1

    def test_register_and_login(self):
        page = self.page()
        page.login("nobody", "wrong password")
        page.wait(lambda: page.signin_status() == "Wrong user name or password.", "the wrong-password message")
        page.register("Ann", "short")
        page.wait(lambda: "too short" in page.signin_status(), "the short-password message")
        page.register("Ann")
        page.in_chat()
        self.assertEqual(page.find("#me").text, "Ann")
        page.screenshot("register-and-login")
        # Someone else may not take the name, whatever its case.
        other = self.page()
        other.register("ann")
        other.wait(lambda: other.signin_status() == "That name is taken: choose another.", "the name-taken message")
        other.login("ANN")
        other.in_chat()
        self.assertEqual(other.find("#me").text, "Ann")
        other.screenshot("register-name-taken-then-login")

    def test_two_browsers_and_a_native_client_talk(self):
        ann, bob = self.page(), self.page()
        ann.register("Ann")
        ann.in_chat()
        bob.register("Bob")
        bob.in_chat()
        carl = self.native("Carl")
        # General: green everywhere.
        ann.say("hello from Ann")
        bob.wait_text("hello from Ann")
        carl.wait_for(lambda f: f.get("text") == "hello from Ann")
        carl.say("hello from Carl")
        for page in (ann, bob):
            page.wait_text("hello from Carl")
            self.assertEqual(page.colour("hello from Carl"), GREEN)
            self.assertEqual(page.colour("hello from Ann"), GREEN)
        # Who is online, in the open conversation.
        ann.wait(lambda: {e.text for e in ann.finds("#people-list .who")} >= {"Ann", "Bob", "Carl"}, "everyone in the online list")
        # A group: blue.
        ann.fill("new-group", "devs")
        ann.find("#create-group").click()
        ann.wait(lambda: ann.driver.execute_script("return window.parley.app.openKey") == "room:devs", "the new group to open")
        carl.request({"type": "group_join", "group": "devs"})
        bob.find("#browse-groups").click()
        bob.wait(lambda: bob.finds("#browse-list button.join"), "the group list")
        bob.find("#browse-list button.join").click()
        bob.wait(lambda: bob.driver.execute_script("return window.parley.app.openKey") == "room:devs", "devs to open for Bob")
        ann.say("devs only")
        bob.wait_text("devs only")
        carl.wait_for(lambda f: f.get("text") == "devs only" and f.get("room") == "devs")
        carl.say("carl in devs", room="devs")
        for page in (ann, bob):
            page.wait_text("carl in devs")
            self.assertEqual(page.colour("carl in devs"), BLUE)
            self.assertEqual(page.colour("devs only"), BLUE)
        # Privately: purple; clicking a name starts the conversation.
        bob.message("devs only").find_element(By.CSS_SELECTOR, ".from").click()
        bob.wait(lambda: bob.driver.execute_script("return window.parley.app.openKey") == "dm:ann", "the private conversation")
        bob.say("psst Ann")
        ann.wait(lambda: ann.unread("dm:bob") == 1, "an unread private message")
        ann.open("dm:bob")
        ann.wait_text("psst Ann")
        self.assertEqual(ann.colour("psst Ann"), PURPLE)
        carl.say("psst from Carl", to="Ann")
        ann.wait(lambda: ann.unread("dm:carl") == 1, "Carl's private message")
        ann.open("dm:carl")
        ann.wait_text("psst from Carl")
        self.assertEqual(ann.colour("psst from Carl"), PURPLE)
        ann.say("hi Carl")
        reply = carl.wait_for(lambda f: f.get("text") == "hi Carl")
        self.assertEqual(reply["from"], "Ann")
        self.assertEqual(reply["to"], "Carl")
        ann.screenshot("talk-ann")
        bob.screenshot("talk-bob")

    def test_https_and_wss(self):
        """The client over HTTPS and its WebSocket over WSS, with a certificate made for the test
        (Chromium trusts exactly that certificate's key: --ignore-certificate-errors-spki-list),
        talking with a native client over TLS."""
        folder = tempfile.mkdtemp(prefix="parley-browser-tls-")
        self.addCleanup(shutil.rmtree, folder, True)
        pki = TestPKI(folder)
        self.server.close()  # setUp's plain server
        self.server = Server(tls=pki)
        ann = self.page(arguments=[f"--ignore-certificate-errors-spki-list={pki.spki}"])
        self.assertTrue(ann.driver.current_url.startswith("https://127.0.0.1:"), ann.driver.current_url)
        ann.register("Ann")
        ann.in_chat()
        self.assertTrue(ann.driver.execute_script("return window.parley.link.ws.url").startswith("wss://"))
        carl = Native(self.server.port, ca=pki.ca).register_and_login("Carl")
        self.natives.append(carl)
        ann.say("hello over WSS")
        carl.wait_for(lambda f: f.get("text") == "hello over WSS")
        carl.say("hello over TLS")
        ann.wait_text("hello over TLS")
        ann.screenshot("https-and-wss")

    def test_offline_private_message_after_login(self):
        carl = self.native("Carl")
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        ann.find("#logout").click()
        ann.wait(lambda: ann.visible("signin"), "the sign-in page after logging out")
        carl.say("while you were out", to="Ann")
        carl.say("general news")
        ann.login("Ann")
        ann.in_chat()
        ann.wait(lambda: ann.unread("dm:carl") == 1, "the missed private message counted")
        ann.open("dm:carl")
        ann.wait_text("while you were out")
        self.assertEqual([e.text for e in ann.finds("#messages .divider")], ["new since you were away"])
        ann.screenshot("offline-private-message")

    def test_markup_is_text(self):
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        bob = self.native("Bob")
        hostile = "<img src=x onerror=alert(1)>"
        bob.say(hostile)
        bob.say("<script>alert(2)</script><b>bold</b>", to="Ann")
        shown = ann.wait_text(hostile)
        self.assertEqual(shown.find_element(By.CSS_SELECTOR, ".text").text, hostile)
        self.assertEqual(ann.finds("#messages img"), [])
        ann.open("dm:bob")
        ann.wait_text("<script>alert(2)</script><b>bold</b>")
        self.assertEqual(ann.finds("#messages b"), [])
        self.assertEqual(ann.finds("#messages script"), [])
        try:
            alert = ann.driver.switch_to.alert
            self.fail("an alert ran: " + alert.text)
        except NoAlertPresentException:
            pass
        ann.screenshot("markup-is-text")

    def test_reload_and_dropped_connection_keep_the_conversation(self):
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        bob = self.native("Bob")
        for i in range(1, 4):
            bob.say(f"before {i}")
        ann.wait_text("before 3")
        # The server restarts: the page says it is offline, then resumes by itself.
        self.server.stop()
        ann.wait(lambda: ann.visible("banner") and "Offline" in ann.find("#banner").text, "the offline banner")
        ann.screenshot("offline-banner")
        self.server.start()
        bob = Native(self.server.port).register_and_login("Bob", register=False)
        self.natives.append(bob)
        for i in range(1, 4):
            bob.say(f"during {i}")
        ann.wait_text("during 3")
        ann.wait(lambda: not ann.visible("banner"), "the banner to go")
        expected = [f"before {i}" for i in range(1, 4)] + [f"during {i}" for i in range(1, 4)]
        self.assertEqual(ann.texts(), expected)
        ann.say("after")
        bob.wait_for(lambda f: f.get("text") == "after")
        # A reload: the same conversation, nothing missing, nothing twice.
        ann.driver.refresh()
        ann.in_chat()
        ann.wait_text("after")
        self.assertEqual(ann.texts(), expected + ["after"])
        bob.say("after reload")
        ann.wait_text("after reload")
        self.assertEqual(ann.texts(), expected + ["after", "after reload"])
        ann.screenshot("reload")

    def test_unread_counts_and_title(self):
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        bob = self.native("Bob")
        bob.say("one", to="Ann")
        bob.say("two", to="Ann")
        ann.wait(lambda: ann.unread("dm:bob") == 2, "two unread")
        ann.wait(lambda: ann.driver.title == "(2) Parley", "the unread total in the title")
        bob.say("hey Ann, look")
        ann.wait_text("hey Ann, look")
        self.assertEqual(ann.unread("room:general"), 0, "the open conversation is read")
        ann.screenshot("unread")
        ann.open("dm:bob")
        ann.wait(lambda: ann.unread("dm:bob") == 0 and ann.driver.title == "Parley", "read after opening")
        # Keyboard: Alt+Up goes back to General.
        ann.find("#composer").send_keys(Keys.ALT, Keys.ARROW_UP)
        ann.wait(lambda: ann.driver.execute_script("return window.parley.app.openKey") == "room:general", "Alt+Up to switch")
        bob.say("three", to="Ann")
        ann.wait(lambda: ann.unread("dm:bob") == 1, "one unread again")
        ann.find("#composer").send_keys(Keys.ALT, Keys.ARROW_DOWN)
        ann.wait(lambda: ann.driver.execute_script("return window.parley.app.openKey") == "dm:bob", "Alt+Down to switch")
        ann.wait(lambda: ann.unread("dm:bob") == 0, "read once opened")

    def test_group_owner_actions(self):
        ann, bob = self.page(), self.page()
        ann.register("Ann")
        ann.in_chat()
        bob.register("Bob")
        bob.in_chat()
        ann.fill("new-group", "secret")
        ann.find("#new-group-invite").click()
        ann.find("#create-group").click()
        ann.wait(lambda: ann.driver.execute_script("return window.parley.app.openKey") == "room:secret", "the group to open")
        ann.wait(lambda: ann.visible("owner-tools"), "the owner's tools")
        ann.fill("invite-user", "Bob")
        ann.find("#invite-form button").click()
        bob.wait(lambda: bob.finds('.conv[data-key="room:secret"] button'), "the invitation")
        bob.find('.conv[data-key="room:secret"] button').click()
        bob.wait(lambda: bob.driver.execute_script("return window.parley.app.openKey") == "room:secret", "Bob in the group")
        ann.wait(lambda: "Bob" in [e.text for e in ann.finds("#people-list .who")], "Bob among the members")
        ann.screenshot("group-members")
        # Open the group to everyone, then hand it over to Bob.
        ann.find("#invite-only").click()
        bob.wait(lambda: any("open to everyone" in e.text for e in bob.finds("#messages .kind-notice")), "the mode change")
        ann.find("#people-list button.transfer").click()
        bob.wait(lambda: any("Bob now owns secret" in e.text for e in bob.finds("#messages .kind-notice")), "the new owner")
        bob.wait(lambda: bob.visible("owner-tools"), "Bob's owner tools")
        ann.wait(lambda: not ann.visible("owner-tools"), "Ann no longer owner")
        # Bob, now owner, removes Ann.
        bob.find("#people-list button.remove").click()
        ann.wait(lambda: any("Ann was removed from secret" in e.text for e in ann.finds("#messages .kind-notice")), "Ann removed")
        bob.wait(lambda: [e.text for e in bob.finds("#people-list .who")] == ["Bob"], "only Bob left")
        bob.screenshot("group-owner-actions")

    def test_phone_width(self):
        page = self.page(390, 844)
        page.register("Pat")
        page.in_chat()
        self.assertFalse(page.find("#sidebar").is_displayed() and page.find("#sidebar").rect["x"] >= 0,
                         "the sidebar starts hidden on a phone")
        page.say("from a phone")
        width = page.driver.execute_script("return document.documentElement.scrollWidth")
        self.assertLessEqual(width, 390, "nothing wider than the screen")
        page.find("#toggle-sidebar").click()
        page.wait(lambda: page.find("#sidebar").rect["x"] >= -1, "the sidebar to slide in")
        page.screenshot("phone-sidebar")
        page.find('.conv[data-key="room:general"]').click()
        page.wait(lambda: page.find("#sidebar").rect["x"] < -10, "the sidebar to slide away")
        page.screenshot("phone")
        # The account dialog, from the sidebar, fits the screen.
        page.find("#toggle-sidebar").click()
        page.wait(lambda: page.find("#sidebar").rect["x"] >= -1, "the sidebar to slide in again")
        page.open_account()
        page.wait(lambda: len(page.sessions()) == 1, "the session list")
        box = page.find("#account").rect
        self.assertGreaterEqual(box["x"], 0)
        self.assertLessEqual(box["x"] + box["width"], 390, "the dialog within the screen")
        self.assertLessEqual(page.driver.execute_script("return document.documentElement.scrollWidth"), 390)
        page.screenshot("phone-account")
        page.find("#account-close").click()
        page.wait(lambda: not page.account_open(), "the dialog to close")

    def test_older_history_loads_when_scrolling_up(self):
        bob = self.native("Bob")
        for i in range(1, 121):
            bob.say(f"old {i}")
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        ann.wait_text("old 120")
        shown = len(ann.texts())
        self.assertLess(shown, 120, "only the newest page at first")
        for _ in range(10):
            if "old 1" in ann.texts():
                break
            ann.driver.execute_script("document.getElementById('messages').scrollTop = 0")
            ann.wait(lambda: len(ann.texts()) > shown or "old 1" in ann.texts(), "an older page")
            shown = len(ann.texts())
        self.assertEqual(ann.texts(), [f"old {i}" for i in range(1, 121)])
        ann.screenshot("history")

    def test_composer_and_dark_scheme(self):
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        box = ann.find("#composer")
        box.send_keys("first line")
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        box.send_keys("second line")
        self.assertEqual(ann.texts(), [], "Shift+Enter does not send")
        box.send_keys(Keys.ENTER)
        ann.wait_text("first line\nsecond line")
        # Near the limit a counter appears, and over it the message is not sent.
        self.assertFalse(ann.find("#counter").is_displayed())
        ann.driver.execute_script(
            "const box = document.getElementById('composer'); box.value = 'x'.repeat(4001);"
            "box.dispatchEvent(new Event('input'));")
        ann.wait(lambda: ann.find("#counter").text == "4001/4000", "the counter")
        box.send_keys(Keys.ENTER)
        ann.wait(lambda: "at most 4000" in ann.find("#chat-status").text, "the too-long message")
        self.assertEqual(len(ann.texts()), 1)
        # The system's dark scheme.
        ann.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        background = ann.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        self.assertEqual(tuple(int(x) for x in re.findall(r"\d+", background)[:3]), (21, 24, 28))
        ann.screenshot("dark")
        ann.open_account()
        ann.wait(lambda: len(ann.sessions()) == 1, "the session list")
        background = ann.find("#account").value_of_css_property("background-color")
        self.assertEqual(tuple(int(x) for x in re.findall(r"\d+", background)[:3]), (21, 24, 28), "the dialog is dark too")
        ann.screenshot("dark-account")

    def test_log_out_while_offline_revokes_the_token(self):
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        token = ann.stored("parley.token")
        self.assertTrue(token)
        self.server.stop()
        ann.wait(lambda: "Offline" in ann.banner(), "the offline banner")
        # Logging out while offline: the page forgets the token at once and keeps it to revoke.
        ann.find("#logout").click()
        ann.wait(lambda: ann.visible("signin"), "the sign-in form after logging out offline")
        self.assertIsNone(ann.stored("parley.token"))
        self.assertEqual(ann.pending_revokes(), [token])
        ann.screenshot("logout-offline")
        # Back online, the page revokes it before anything else and does not log in.
        self.server.start()
        ann.wait(lambda: ann.stored("parley.pendingRevoke") is None, "the pending revoke to be answered")
        ann.wait(lambda: ann.driver.execute_script("return window.parley.link.connected") and not ann.visible("banner"),
                 "the page back online")
        self.assertTrue(ann.visible("signin"))
        self.assertFalse(ann.driver.execute_script("return window.parley.app.loggedIn"))
        reply = self.login_with_token("Ann", token)
        self.assertEqual(reply.get("code"), "INVALID_CREDENTIALS", "the token no longer works")
        ann.login("Ann")
        ann.in_chat()

    def test_change_password_logs_out_the_other_sessions(self):
        ann, other = self.page(), self.page()
        ann.register("Ann")
        ann.in_chat()
        other.login("Ann")
        other.in_chat()
        other_token = other.stored("parley.token")
        other.mark_connection()
        carl = self.native("Ann", register=False)  # a native session of the same account
        ann.open_account()
        ann.change_password("wrong password", NEW_PASSWORD)
        ann.wait(lambda: ann.password_status() == "The current password is wrong.", "the wrong-password message")
        ann.change_password(PASSWORD, NEW_PASSWORD, "battery stapler")
        ann.wait(lambda: ann.password_status() == "The two new passwords differ.", "the mismatch message")
        ann.change_password(PASSWORD, NEW_PASSWORD)
        ann.wait(lambda: ann.password_status().startswith("Password changed"), "the password changed")
        self.assertEqual(ann.find("#current-password").get_attribute("value"), "", "the fields are cleared")
        ann.screenshot("account-password-changed")
        # Every other session is closed with LOGGED_OUT; the other page shows why, at the sign-in
        # form, and does not log in again with its (revoked) token once reconnected.
        closed = carl.wait_for(lambda f: f.get("type") == "error")
        self.assertEqual(closed["code"], "LOGGED_OUT")
        message = closed.get("message") or "You were logged out."
        other.wait(lambda: other.visible("signin") and other.signin_status() == message, "the other page at the sign-in form")
        other.wait(other.reconnected, "the other page to reconnect")
        self.assertIsNone(other.stored("parley.token"))
        self.assertTrue(other.visible("signin"))
        self.assertEqual(other.signin_status(), message)
        self.assertFalse(other.driver.execute_script("return window.parley.app.loggedIn"))
        other.screenshot("logged-out-by-password-change")
        self.assertEqual(self.login_with_token("Ann", other_token).get("code"), "INVALID_CREDENTIALS")
        # This session and its token stay.
        ann.find("#account-close").click()
        ann.wait(lambda: not ann.account_open(), "the dialog to close")
        ann.say("still here")
        ann.driver.refresh()
        ann.in_chat()
        # The old password no longer works, the new one does.
        other.login("Ann", PASSWORD)
        other.wait(lambda: other.signin_status() == "Wrong user name or password.", "the old password refused")
        other.login("Ann", NEW_PASSWORD)
        other.in_chat()
        other.wait_text("still here")

    def test_sessions_list_ends_another_session_and_logs_out_everywhere(self):
        ann, other = self.page(), self.page()
        ann.register("Ann")
        ann.in_chat()
        other.login("Ann")
        other.in_chat()
        other_token = other.stored("parley.token")
        other.mark_connection()
        ann.open_account()
        ann.wait(lambda: len(ann.sessions()) == 2, "two sessions listed")
        rows = ann.sessions()
        self.assertIn("this device", rows[0], "this session first, marked")
        self.assertNotIn("this device", rows[1])
        self.assertTrue(all("websocket" in row and "since" in row for row in rows), rows)
        ends = ann.finds("#sessions-list li button")
        self.assertEqual(len(ends), 1, "an End button for the other session only")
        self.assertTrue(ends[0].get_attribute("aria-label").startswith("End the websocket session from"))
        ann.screenshot("account-sessions")
        ends[0].click()
        ann.wait(lambda: len(ann.sessions()) == 1, "the ended session to leave the list")
        other.wait(lambda: other.visible("signin") and other.signin_status() != "", "the ended page at the sign-in form")
        other.wait(other.reconnected, "the ended page to reconnect")
        self.assertTrue(other.visible("signin"), "no automatic login with the revoked token")
        self.assertIsNone(other.stored("parley.token"))
        self.assertEqual(self.login_with_token("Ann", other_token).get("code"), "INVALID_CREDENTIALS")
        ann.find("#refresh-sessions").click()
        ann.wait(lambda: len(ann.sessions()) == 1 and "this device" in ann.sessions()[0], "only this session left")
        # Log out everywhere: both pages end up at the sign-in form, and neither token works.
        other.login("Ann")
        other.in_chat()
        other_token = other.stored("parley.token")
        ann_token = ann.stored("parley.token")
        ann.find("#logout-everywhere").click()
        ann.wait(lambda: ann.visible("signin") and ann.stored("parley.token") is None, "this page logged out")
        other.wait(lambda: other.visible("signin") and other.signin_status() != "", "the other page logged out")
        for token in (ann_token, other_token):
            self.assertEqual(self.login_with_token("Ann", token).get("code"), "INVALID_CREDENTIALS")
        ann.login("Ann")
        ann.in_chat()

    def test_rate_limited_logins_wait_and_recover(self):
        # The server's throttle: 5 failed logins, then 1 s, doubling with each further failure.
        # Eight failures close logins to Ann (and to this address) for 8 s: time enough for a
        # reload and a typed login to be refused, even on a slow machine.
        ann, typed = self.page(), self.page()
        ann.register("Ann")
        ann.in_chat()
        typed.wait(lambda: typed.driver.execute_script("return !!(window.parley && window.parley.app.hello)"), "the hello")
        self.throttle("Ann", 8)
        # A password typed meanwhile: the page says how long to wait, with the button off.
        typed.login("Ann")
        typed.wait(lambda: typed.signin_status().startswith("Too many attempts: try again in") and not typed.find("#login").is_enabled(),
                   "the wait after a typed password")
        typed.screenshot("rate-limited-typed")
        # A reload logs in with the token: refused, it says so and tries again by itself.
        ann.driver.refresh()
        ann.wait(lambda: ann.banner().startswith("Too many attempts; retrying in"), "the retry banner")
        ann.screenshot("rate-limited-retrying")
        ann.in_chat(timeout=60)
        ann.wait(lambda: not ann.visible("banner"), "the banner to go")
        # The typed login's button comes back, and then works.
        typed.wait(lambda: typed.find("#login").is_enabled(), "the login button back", timeout=60)
        typed.find("#login").click()
        typed.in_chat()

    def native_login(self, name):
        """Registers and logs in `name` natively; returns the client and the message of the day."""
        client = Native(self.server.port)
        self.natives.append(client)
        client.request({"type": "register", "username": name, "password": PASSWORD})
        client.request({"type": "login", "username": name, "password": PASSWORD})
        motd = client.wait_for(lambda f: f.get("type") == "motd")
        return client, motd.get("text", "")

    def assert_stays_offline(self, page, name, seconds=3):
        """`page` neither reconnects nor logs `name` in again by itself for `seconds` (its first
        automatic try would come after half a second), and the server lists no session of theirs."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.assertFalse(page.socket_open(), "the page reconnected by itself")
            self.assertNotIn(f'"{name.lower()}"', self.server.online_names(), f"{name} is online again")
            time.sleep(0.25)  # polling a condition that must stay false, not ordering events

    def test_kicked_by_an_operator(self):
        carl, motd = self.native_login("Carl")  # hears notices like everyone, with the operator's name
        self.assertTrue(motd, "the server sends a message of the day at login")
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        # The message of the day, above General, as text.
        ann.wait(lambda: ann.visible("motd") and ann.find("#motd").text == motd, "the message of the day")
        ann.screenshot("motd")
        # A notice: a highlighted system line, not a chat message, naming who sent it.
        status, output = self.server.admin("notice", "maintenance at noon <b>sharp</b>")
        self.assertEqual(status, 0, output)
        heard = carl.wait_for(lambda f: f.get("type") == "notice")
        by = heard["by"]
        self.assertTrue(by, "a notice names its operator")
        ann.wait(lambda: any("maintenance at noon <b>sharp</b>" in line and by in line for line in ann.system_lines()), "the notice")
        self.assertEqual(ann.finds("#messages b"), [], "shown as text")
        self.assertNotIn("maintenance at noon <b>sharp</b>", ann.texts(), "not a chat message")
        ann.screenshot("notice")
        # The kick: who and why in a dialog, and the page stays offline.
        status, output = self.server.admin("kick", "Ann", "spamming")
        self.assertEqual(status, 0, output)
        ann.wait(ann.removed_open, "the kick dialog")
        self.assertEqual(ann.find("#removed-title").text, "You were kicked")
        text = ann.find("#removed-text").text
        self.assertIn("spamming", text)
        self.assertIn(by, text)
        self.assertIn("spamming", ann.driver.execute_script("return document.getElementById('banner').textContent"))
        ann.screenshot("kicked")
        ann.wait(lambda: not ann.socket_open(), "the connection to close")
        ann.wait(lambda: '"ann"' not in self.server.online_names(), "Ann's session gone from the server")
        self.assert_stays_offline(ann, "Ann")
        self.assertTrue(ann.removed_open(), "the dialog stays until answered")
        # Coming back by hand: the same conversation, nothing missed.
        carl.say("while Ann was out")
        ann.find("#removed-reconnect").click()
        ann.in_chat()
        ann.wait_text("while Ann was out")
        ann.wait(lambda: not ann.visible("banner"), "the banner to go")
        self.assertFalse(ann.removed_open())

    def test_banned_by_an_operator(self):
        ann = self.page()
        ann.register("Ann")
        ann.in_chat()
        elsewhere = self.native("Ann", register=False)  # a native session of the same account
        status, output = self.server.admin("ban", "Ann", "spam")
        self.assertEqual(status, 0, output)
        closed = elsewhere.wait_for(lambda f: f.get("type") == "error")
        self.assertEqual(closed["code"], "BANNED")
        by = closed["by"]
        # The live page: who and why, and no reconnecting.
        ann.wait(ann.removed_open, "the ban dialog")
        self.assertEqual(ann.find("#removed-title").text, "You are banned")
        self.assertIn("spam", ann.find("#removed-text").text)
        self.assertIn(by, ann.find("#removed-text").text)
        ann.screenshot("banned")
        ann.wait(lambda: not ann.socket_open(), "the connection to close")
        self.assert_stays_offline(ann, "Ann")
        # Reconnecting by hand: the login is refused, and the sign-in form says why (once: no loop).
        ann.find("#removed-reconnect").click()
        ann.wait(lambda: ann.visible("signin") and "spam" in ann.signin_status(), "the refusal at the sign-in form")
        self.assertIn(by, ann.signin_status())
        self.assertIn("banned", ann.signin_status())
        self.assertFalse(ann.driver.execute_script("return window.parley.app.loggedIn"))
        # A typed login is refused the same way; a ban with an end says until when.
        bob, _ = self.native_login("Bob")
        bob.close()
        status, output = self.server.admin("ban", "Bob", "--for", "2h", "flooding")
        self.assertEqual(status, 0, output)
        typed = self.page()
        typed.login("Bob")
        typed.wait(lambda: "flooding" in typed.signin_status(), "the refusal of a typed login")
        self.assertIn("until", typed.signin_status())
        self.assertIn(by, typed.signin_status())
        self.assertTrue(typed.visible("signin"))
        typed.screenshot("banned-login")

    def test_startup_time(self):
        page = self.page()
        page.wait(lambda: page.driver.execute_script("return !!(window.parley && window.parley.app.hello)"), "the hello")
        timing = page.driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd];")
        print(f"\n  page ready: DOMContentLoaded at {timing[0]:.0f} ms, load at {timing[1]:.0f} ms", file=sys.stderr)
        page.screenshot("sign-in")


if __name__ == "__main__":
    unittest.main(verbosity=2)
