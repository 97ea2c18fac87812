"""Server-rendered web pages shared by the services: layout, assets, sessions, CSRF, error pages.

``shared.web.realm.WebRealm`` signs people in with a credential; ``shared.web.pages.Pages`` renders.
"""
