"""Makes docs/browser.png, the README's picture of the browser client: a few people talking in
General, a group and privately. Run after `swift build`:  python3 Tests/Browser/readme_screenshot.py"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_tests import ROOT, Native, Page, Server  # noqa: E402

server = Server()
try:
    carl = Native(server.port).register_and_login("Carl")
    dana = Native(server.port).register_and_login("Dana")
    ann = Page(server, 1100, 640)
    ann.register("Ann")
    ann.in_chat()
    carl.say("Morning all! Release notes are up.")
    dana.say("Thanks Carl. @Ann can you check the WebSocket numbers?")
    ann.wait_text("Thanks Carl. @Ann can you check the WebSocket numbers?")
    ann.say("On it: half the native rate or better, as promised.")
    ann.fill("new-group", "devs")
    ann.find("#create-group").click()
    ann.wait(lambda: ann.driver.execute_script("return window.parley.app.openKey") == "room:devs", "devs")
    carl.request({"type": "group_join", "group": "devs"})
    ann.say("Build is green again.")
    carl.say("Nice. Merging the browser client now.", room="devs")
    ann.wait_text("Nice. Merging the browser client now.")
    dana.say("lunch at 12?", to="Ann")
    ann.open("room:general")
    carl.say("Anyone up for a review this afternoon?")
    dana.say("Welcome to the new Parley, everyone.")
    ann.wait_text("Welcome to the new Parley, everyone.")
    carl.say("psst: the demo is at 3", to="Ann")
    ann.wait(lambda: ann.unread("dm:carl") == 1, "Carl's message")
    ann.driver.save_screenshot(os.path.join(ROOT, "docs", "browser.png"))
    ann.close()
finally:
    server.close()
