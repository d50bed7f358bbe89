"""LangChain adapter: RoutedChatModel and the CostLatencyHandler callback."""
